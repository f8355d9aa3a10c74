"""Ranks and recalls of image-text retrieval (SPEC-COMMON §5.3), vectorised in torch over row chunks.

``sims`` is the (N_img, N_img * caps_per_image) score matrix; caption ``c`` belongs to image
``c // caps_per_image``, so image ``i`` owns the captions ``[caps_per_image * i, caps_per_image * (i + 1))``.
Ranks are 0-based.

- **i2t**: one query per image; its rank is the best (minimum) rank among its ground-truth captions.
- **t2i**: one query per caption; its rank is the rank of its single ground-truth image.

**Tie rule (pessimistic).** Ties are broken against the query: the ranking places every ground truth
*after* the non-ground-truth items with an equal score. A query's rank is the position of its first
ground truth in that ranking, i.e. the number of *non*-ground-truth items scoring at least as high as
the best ground truth:

- t2i (one ground truth): ``rank = #{images with score > s_gt} + #{other images with score == s_gt}``
  ``= #{images with score >= s_gt} - 1``;
- i2t: ``rank = #{captions with score >= best_gt} - #{ground-truth captions with score == best_gt}``.
  Ground truths tied only with each other do not count against the query (whichever comes first is a
  hit), so an image whose ground-truth captions tie above everything else has rank 0.

Without ties this equals, exactly, the official VSE-infinity result (first ground-truth position in
``np.argsort(scores)[::-1]``); with ties between a ground truth and a non-ground-truth item the
official result depends on the sort order of equal scores, whereas this rule is deterministic and
never flatters a model.

``top1`` is the index of the highest-scoring item of each query (``torch.argmax``: the first index
among equal maxima).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Ranks:
    """Per-query results: ``ranks`` (Q,) int64 0-based rank of the ground truth; ``top1`` (Q,) int64."""

    ranks: np.ndarray
    top1: np.ndarray


def _validated(sims: torch.Tensor | np.ndarray, caps_per_image: int) -> torch.Tensor:
    """``sims`` as a floating tensor (integer input becomes float64, exact) after shape/finiteness checks."""
    sims = torch.as_tensor(sims)
    if not sims.is_floating_point():
        sims = sims.to(torch.float64)
    if caps_per_image < 1:
        raise ValueError(f"caps_per_image must be >= 1, got {caps_per_image}")
    if sims.ndim != 2:
        raise ValueError(f"sims must be 2-D (N_img, N_img*{caps_per_image}), got shape {tuple(sims.shape)}")
    n_img, n_cap = sims.shape
    if n_img == 0 or n_cap != n_img * caps_per_image:
        raise ValueError(f"sims has shape {tuple(sims.shape)}; expected ({n_img}, {n_img * caps_per_image})"
                         f" = (N_img, N_img*caps_per_image), caps_per_image={caps_per_image}, N_img > 0")
    # fast path: a sum is finite only if every term is (a finite overflow just falls through to the count)
    bad = 0 if torch.isfinite(sims.sum()) else int((~torch.isfinite(sims)).sum())
    if bad:
        raise ValueError(f"sims contains {bad} non-finite value(s) (NaN or inf) out of {sims.numel()}")
    return sims


def i2t_ranks(sims: torch.Tensor | np.ndarray, caps_per_image: int = 5, chunk: int = 1024) -> Ranks:
    """Image-to-text ranks of ``sims`` (N_img, N_img*caps_per_image): N_img queries; top1 = caption index.

    ``chunk`` rows of ``sims`` are compared per step (memory: chunk x N_cap booleans).
    """
    return _i2t(_validated(sims, caps_per_image), caps_per_image, chunk)


def t2i_ranks(sims: torch.Tensor | np.ndarray, caps_per_image: int = 5, chunk: int = 1024) -> Ranks:
    """Text-to-image ranks of ``sims`` (N_img, N_img*caps_per_image): N_cap queries; top1 = image index.

    ``chunk`` rows (images) of ``sims`` are compared per step, for all caption queries at once.
    """
    return _t2i(_validated(sims, caps_per_image), caps_per_image, chunk)


def _check_chunk(chunk: int) -> None:
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 rows, got {chunk}")


def _i2t(sims: torch.Tensor, caps_per_image: int, chunk: int) -> Ranks:
    _check_chunk(chunk)
    n_img = sims.shape[0]
    offsets = torch.arange(caps_per_image, device=sims.device)
    ranks, top1 = [], []
    for start in range(0, n_img, chunk):
        rows = sims[start:start + chunk]  # (n, N_cap)
        images = torch.arange(start, start + rows.shape[0], device=sims.device)
        gt_cols = images[:, None] * caps_per_image + offsets  # (n, caps_per_image)
        gt = rows.gather(1, gt_cols)  # (n, caps_per_image)
        best_gt = gt.amax(dim=1, keepdim=True)  # (n, 1)
        at_least_best = (rows >= best_gt).sum(dim=1, dtype=torch.int32)
        ranks.append(at_least_best - (gt == best_gt).sum(dim=1, dtype=torch.int32))  # GT ties don't count
        top1.append(rows.argmax(dim=1))
    return Ranks(ranks=torch.cat(ranks).cpu().numpy().astype(np.int64),
                 top1=torch.cat(top1).cpu().numpy().astype(np.int64))


def _t2i(sims: torch.Tensor, caps_per_image: int, chunk: int) -> Ranks:
    _check_chunk(chunk)
    n_img, n_cap = sims.shape
    captions = torch.arange(n_cap, device=sims.device)
    gt = sims[captions // caps_per_image, captions]  # (N_cap,)
    at_least_gt = torch.zeros(n_cap, dtype=torch.int32, device=sims.device)
    best = torch.full_like(gt, -torch.inf)
    top1 = torch.zeros(n_cap, dtype=torch.int64, device=sims.device)
    for start in range(0, n_img, chunk):  # image rows; every caption query is updated at once
        rows = sims[start:start + chunk]  # (n, N_cap)
        at_least_gt += (rows >= gt).sum(dim=0, dtype=torch.int32)
        values, index = rows.max(dim=0)  # first maximal index within the chunk
        better = values > best  # strict: an earlier chunk keeps ties
        best = torch.where(better, values, best)
        top1 = torch.where(better, index + start, top1)
    return Ranks(ranks=(at_least_gt - 1).cpu().numpy().astype(np.int64), top1=top1.cpu().numpy())


def recall_summary(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``{"r1", "r5", "r10", "medr", "meanr"}`` of 0-based ``ranks`` (Q,): R@K = 100*mean(rank < K)."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {ranks.shape}")
    summary = {f"r{k}": 100.0 * int(np.count_nonzero(ranks < k)) / ranks.size for k in ks}
    summary["medr"] = float(np.floor(np.median(ranks)) + 1)
    summary["meanr"] = float(ranks.mean() + 1)
    return summary


def retrieval_metrics(sims: torch.Tensor | np.ndarray, caps_per_image: int = 5
                      ) -> tuple[dict[str, float], dict[str, Ranks]]:
    """Metrics ``i2t_{r1,r5,r10,medr,meanr}``, ``t2i_...``, ``rsum`` and ``{"i2t": Ranks, "t2i": Ranks}``."""
    sims = _validated(sims, caps_per_image)
    ranks = {"i2t": _i2t(sims, caps_per_image, 1024), "t2i": _t2i(sims, caps_per_image, 1024)}
    metrics: dict[str, float] = {}
    for direction, result in ranks.items():
        metrics.update({f"{direction}_{key}": value for key, value in recall_summary(result.ranks).items()})
    metrics["rsum"] = (metrics["i2t_r1"] + metrics["i2t_r5"] + metrics["i2t_r10"]
                       + metrics["t2i_r1"] + metrics["t2i_r5"] + metrics["t2i_r10"])
    return metrics, ranks
