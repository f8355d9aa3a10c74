"""Evaluation: ranks and recalls, protocols (F30K 1K, COCO 5-fold 1K, COCO 5K) and sharded scoring."""

from itrlib.evaluation.metrics import Ranks, i2t_ranks, recall_summary, retrieval_metrics, t2i_ranks
from itrlib.evaluation.protocols import PROTOCOLS, Protocol, evaluate_blocks, fold_bounds, get_protocol
from itrlib.evaluation.scoring import global_score, sharded_scores

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "Ranks",
    "evaluate_blocks",
    "fold_bounds",
    "get_protocol",
    "global_score",
    "i2t_ranks",
    "recall_summary",
    "retrieval_metrics",
    "sharded_scores",
    "t2i_ranks",
]
