"""Evaluation protocols (SPEC-COMMON §5.4): Flickr30K 1K, COCO 5K and COCO 5-fold 1K."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from itrlib.errors import ConfigError, DataError
from itrlib.evaluation.metrics import retrieval_metrics


@dataclass(frozen=True)
class Protocol:
    """A named protocol: which split to evaluate and into how many equal image folds to cut it."""

    name: str
    split: str
    folds: int
    description: str


PROTOCOLS: dict[str, Protocol] = {
    "f30k1k": Protocol("f30k1k", "test", 1,
                       "Flickr30K 1K test: 1,000 images x 5,000 captions, one evaluation"),
    "coco1k": Protocol("coco1k", "testall", 5,
                       "COCO 5-fold 1K: testall cut into 5 folds of 1,000 images x 5,000 captions; "
                       "every metric (rsum included) averaged over the folds"),
    "coco5k": Protocol("coco5k", "testall", 1,
                       "COCO 5K: the full testall split, 5,000 images x 25,000 captions, one evaluation"),
}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; an unknown name raises ConfigError listing the valid ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        valid = ", ".join(sorted(PROTOCOLS))
        raise ConfigError(f"unknown evaluation protocol {name!r}; valid: {valid}") from None


def fold_bounds(n_images: int, folds: int) -> list[tuple[int, int]]:
    """``folds`` equal, contiguous ``[start, stop)`` image ranges covering ``range(n_images)``."""
    if folds < 1:
        raise ConfigError(f"folds must be >= 1, got {folds}")
    if n_images < folds or n_images % folds:
        raise DataError(f"{n_images} images cannot be cut into {folds} equal non-empty folds")
    size = n_images // folds
    return [(f * size, (f + 1) * size) for f in range(folds)]


def evaluate_blocks(similarity: Callable[[slice, slice], torch.Tensor], n_images: int, protocol: Protocol,
                    caps_per_image: int = 5) -> dict:
    """Evaluate ``protocol`` given ``similarity(img_slice, cap_slice) -> (n_i, n_c)`` scores of the split.

    Returns a JSON-able dict: ``protocol``, ``split``, ``n_images``, ``n_captions``, ``folds`` (per-fold
    metrics, only when the protocol has several), ``metrics`` (averaged over folds) and ``ranks`` (lists
    ``i2t``, ``i2t_top1``, ``t2i``, ``t2i_top1`` concatenated over folds; top1 are global split indices).
    """
    fold_metrics: list[dict[str, float]] = []
    ranks: dict[str, list[int]] = {"i2t": [], "i2t_top1": [], "t2i": [], "t2i_top1": []}
    for start, stop in fold_bounds(n_images, protocol.folds):
        cap_start, cap_stop = start * caps_per_image, stop * caps_per_image
        block = similarity(slice(start, stop), slice(cap_start, cap_stop))
        try:
            metrics, fold_ranks = retrieval_metrics(block, caps_per_image)
        except ValueError as err:
            raise ValueError(f"{protocol.name}: images [{start}, {stop}) x captions "
                             f"[{cap_start}, {cap_stop}): {err}") from err
        fold_metrics.append(metrics)
        ranks["i2t"] += fold_ranks["i2t"].ranks.tolist()
        ranks["i2t_top1"] += (fold_ranks["i2t"].top1 + cap_start).tolist()
        ranks["t2i"] += fold_ranks["t2i"].ranks.tolist()
        ranks["t2i_top1"] += (fold_ranks["t2i"].top1 + start).tolist()
    result: dict = {"protocol": protocol.name, "split": protocol.split, "n_images": n_images,
                    "n_captions": n_images * caps_per_image}
    if protocol.folds > 1:
        result["folds"] = fold_metrics
    result["metrics"] = {key: float(np.mean([m[key] for m in fold_metrics])) for key in fold_metrics[0]}
    result["ranks"] = ranks
    return result
