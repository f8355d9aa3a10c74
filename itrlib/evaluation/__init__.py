"""Evaluation: protocols (F30K 1K, COCO 5-fold 1K, COCO 5K; :mod:`~itrlib.evaluation.protocols`, light to
import), ranks and recalls (:mod:`~itrlib.evaluation.metrics`), ranking a split under a protocol
(:mod:`~itrlib.evaluation.ranking`), sharded scoring and whole-split evaluation of a model."""
