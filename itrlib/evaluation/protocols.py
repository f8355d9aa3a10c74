"""Evaluation protocols of the papers (AFA Sec. 4, as woodfrog/vse_infty evaluates them; docs/PAPER_DIFFERENCES.md
section 1): Flickr30K 1K, COCO 5K and COCO 5-fold 1K.

``PROTOCOLS`` is the one list of protocol names in the suite (the CLI, the profiles and the paper tables
read it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from itrlib.config import TIE_RULES
from itrlib.errors import ConfigError, DataError
from itrlib.evaluation.metrics import retrieval_metrics


@dataclass(frozen=True)
class Protocol:
    """A named protocol: which split to evaluate and into how many equal image folds to cut it.

    ``paper_dataset``/``paper_protocol`` name the protocol in the papers' tables (``paper_tables.csv``),
    ``paper_images`` the test images per evaluation (per fold) there.
    """

    name: str
    split: str
    folds: int
    description: str
    paper_dataset: str | None = None
    paper_protocol: str | None = None
    paper_images: int | None = None


PROTOCOLS: dict[str, Protocol] = {
    "f30k1k": Protocol("f30k1k", "test", 1,
                       "Flickr30K 1K test: 1,000 images x 5,000 captions, one evaluation", "f30k", "1k", 1000),
    "coco1k": Protocol("coco1k", "testall", 5,
                       "COCO 5-fold 1K: testall cut into 5 folds of 1,000 images x 5,000 captions; "
                       "every metric (rsum included) averaged over the folds", "coco", "5fold1k", 1000),
    "coco5k": Protocol("coco5k", "testall", 1,
                       "COCO 5K: the full testall split, 5,000 images x 25,000 captions, one evaluation",
                       "coco", "5k", 5000),
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


def check_tie_rule(ties: str) -> str:
    if ties not in TIE_RULES:
        raise ConfigError(f"unknown tie rule {ties!r}; valid: {', '.join(TIE_RULES)}")
    return ties


def protocol_blocks(n_images: int, protocol: Protocol, caps_per_image: int = 5) -> list[tuple[slice, slice]]:
    """(image slice, caption slice) of every fold of ``protocol`` on a split of ``n_images`` images."""
    return [(slice(start, stop), slice(start * caps_per_image, stop * caps_per_image))
            for start, stop in fold_bounds(n_images, protocol.folds)]


def evaluate_blocks(similarity: Callable[[slice, slice], torch.Tensor], n_images: int, protocol: Protocol,
                    caps_per_image: int = 5, ties: str = "pessimistic") -> dict:
    """Evaluate ``protocol`` given ``similarity(img_slice, cap_slice) -> (n_i, n_c)`` scores of the split.

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
            metrics, fold_ranks = retrieval_metrics(block, caps_per_image, ties=ties)
        except ValueError as err:
            raise ValueError(f"{protocol.name}: images [{images.start}, {images.stop}) x captions "
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
    sims = torch.as_tensor(sims)
    if sims.is_complex() or sims.dtype == torch.bool:
        raise DataError(f"scores of dtype {str(sims.dtype).removeprefix('torch.')} cannot be ranked: expected real "
                        "numbers (a float or integer dtype)")
    if sims.ndim != 2:
        raise DataError(f"scores must be a 2-D matrix (N_img, {caps_per_image} * N_img); got shape "
                        f"{tuple(sims.shape)}")
    n_img, n_cap = sims.shape
    if n_img == 0 or n_cap != caps_per_image * n_img:
        raise DataError(f"scores of shape {tuple(sims.shape)}: {n_cap} captions for {n_img} images, expected "
                        f"{caps_per_image} captions per image ({caps_per_image * n_img} columns; caption c "
                        f"belongs to image c // {caps_per_image})")
    if not sims.is_floating_point():
        sims = sims.to(torch.float64)
    bad = int((~torch.isfinite(sims)).sum()) if not torch.isfinite(sims.sum()) else 0
    if bad:
        raise DataError(f"scores contain {bad} non-finite value(s) (NaN or inf) out of {sims.numel()}")
    return evaluate_blocks(lambda images, captions: sims[images, captions], n_img, spec, caps_per_image, ties)
