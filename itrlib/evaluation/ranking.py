"""Ranking a split's scores under a protocol: fold by fold, the recalls and per-query ranks of
:mod:`itrlib.evaluation.metrics`, averaged over the folds as the papers report them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from itrlib.errors import DataError
from itrlib.evaluation.metrics import Ranks, check_score_matrix, retrieval_metrics
from itrlib.evaluation.protocols import Protocol, check_tie_rule, get_protocol, protocol_blocks
from itrlib.evaluation.two_stage import DirectionalScores


def block_metrics(block: torch.Tensor | DirectionalScores, caps_per_image: int, ties: str
                  ) -> tuple[dict[str, float], dict[str, Ranks]]:
    """:func:`retrieval_metrics` of one block; of :class:`DirectionalScores`, each direction from its matrix."""
    if not isinstance(block, DirectionalScores):
        return retrieval_metrics(block, caps_per_image, ties=ties)
    metrics, ranks = {}, {}
    for direction in ("i2t", "t2i"):
        part, part_ranks = retrieval_metrics(getattr(block, direction), caps_per_image, ties=ties)
        metrics.update({k: v for k, v in part.items() if k.startswith(f"{direction}_")})
        ranks[direction] = part_ranks[direction]
    metrics["rsum"] = sum(metrics[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    return metrics, ranks


def evaluate_blocks(similarity: Callable[[slice, slice], torch.Tensor | DirectionalScores], n_images: int,
                    protocol: Protocol, caps_per_image: int = 5, ties: str = "pessimistic") -> dict:
    """Evaluate ``protocol`` given ``similarity(img_slice, cap_slice) -> (n_i, n_c)`` scores of the split
    (one matrix, or one per direction: two-stage retrieval's :class:`DirectionalScores`).

    Returns a JSON-able dict: ``protocol``, ``split``, ``n_images``, ``n_captions``, ``folds`` (per-fold
    metrics, only when the protocol has several), ``metrics`` (averaged over folds), ``ties`` (the rule),
    ``tied_queries`` (per direction, queries whose ground truth tied with another item, summed over folds)
    and ``ranks`` (lists ``i2t``, ``i2t_top1``, ``t2i``, ``t2i_top1`` concatenated over folds; top1 are
    global split indices).
    """
    check_tie_rule(ties)
    fold_metrics: list[dict[str, float]] = []
    ranks: dict[str, list[int]] = {"i2t": [], "i2t_top1": [], "t2i": [], "t2i_top1": []}
    tied = {"i2t": 0, "t2i": 0}
    for images, captions in protocol_blocks(n_images, protocol, caps_per_image):
        block = similarity(images, captions)
        try:
            metrics, fold_ranks = block_metrics(block, caps_per_image, ties)
        except DataError as err:
            raise DataError(f"{protocol.name}: images [{images.start}, {images.stop}) x captions "
                            f"[{captions.start}, {captions.stop}): {err}") from err
        fold_metrics.append(metrics)
        for direction, offset in (("i2t", captions.start), ("t2i", images.start)):
            ranks[direction] += fold_ranks[direction].ranks.tolist()
            ranks[f"{direction}_top1"] += (fold_ranks[direction].top1 + offset).tolist()
            tied[direction] += fold_ranks[direction].tied
    result: dict = {"protocol": protocol.name, "split": protocol.split, "n_images": n_images,
                    "n_captions": n_images * caps_per_image}
    if protocol.folds > 1:
        result["folds"] = fold_metrics
    result["metrics"] = {key: float(np.mean([m[key] for m in fold_metrics])) for key in fold_metrics[0]}
    result["ties"] = ties
    result["tied_queries"] = tied
    result["ranks"] = ranks
    return result


def evaluate_scores(sims: torch.Tensor | np.ndarray, protocol: str | Protocol, *, caps_per_image: int = 5,
                    ties: str = "pessimistic") -> dict:
    """Rank a whole split's score matrix ``sims`` (N_img, caps_per_image * N_img) under ``protocol``.

    Any scores can be evaluated this way (saved ``scores-<split>.npy``, another code base's matrix, a
    weighted sum of runs). A wrong shape, a non-finite score, a caption count that is not ``caps_per_image``
    per image or a complex or bool dtype raises DataError. Returns the dict of :func:`evaluate_blocks`.
    """
    spec = get_protocol(protocol) if isinstance(protocol, str) else protocol
    sims = check_score_matrix(sims, caps_per_image)
    n_img = sims.shape[0]
    return evaluate_blocks(lambda images, captions: sims[images, captions], n_img, spec, caps_per_image, ties)
