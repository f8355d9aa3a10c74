"""``ranking``: ``retrieval_metrics`` against a per-query argsort in the style of the official VSE∞ evaluation,
on the same tie-free F30K 1K (1000 x 5000) and COCO 5K (5000 x 25000) float32 matrices; the bench fails if
ranks, recalls or top-1 differ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from itrlib.evaluation.metrics import retrieval_metrics
from itrlib.suite.bench.timing import time_call


def tie_free_sims(n_img: int, caps_per_image: int = 5, seed: int = 0) -> np.ndarray:
    """(n_img, n_img*caps_per_image) float32 standard-normal scores with no tie that a rank or a top-1 could
    depend on: entries equal to a row's or a column's ground-truth score or maximum are redrawn until each
    of those values occurs once in its row (column). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    sims = rng.standard_normal((n_img, n_img * caps_per_image), dtype=np.float32)
    while (tied := _tied_entries(sims, caps_per_image)).any():
        sims[tied] = rng.standard_normal(int(tied.sum()), dtype=np.float32)
    return sims


def _tied_entries(sims: np.ndarray, caps_per_image: int) -> np.ndarray:
    """(N_img, N_cap) mask of the entries equal to a reference value of their row or column (best ground
    truth, maximum) that occurs more than once there."""
    n_img = sims.shape[0]
    gt = sims.reshape(n_img, n_img, caps_per_image)[np.arange(n_img), np.arange(n_img)]  # (N_img, caps)
    tied = np.zeros(sims.shape, dtype=bool)
    for axis, reference in ((1, gt.max(axis=1)), (1, sims.max(axis=1)), (0, gt.reshape(-1)), (0, sims.max(axis=0))):
        equal = sims == np.expand_dims(reference, axis)
        tied |= equal & np.expand_dims(equal.sum(axis=axis) > 1, axis)
    return tied


def official_style_ranks(sims: np.ndarray, caps_per_image: int = 5) -> dict[str, np.ndarray]:
    """Per-query ranks the way the official evaluation loops: ``inds = np.argsort(scores)[::-1]``, the rank
    is ``np.where(inds == gt)[0][0]`` (i2t: minimum over the image's captions), top-1 is ``inds[0]``.
    ``sims`` (N_img, N_cap); returns ``i2t``, ``i2t_top1`` (N_img,) and ``t2i``, ``t2i_top1`` (N_cap,)."""
    n_img, n_cap = sims.shape
    out = {key: np.zeros(n, dtype=np.int64) for key, n in
           (("i2t", n_img), ("i2t_top1", n_img), ("t2i", n_cap), ("t2i_top1", n_cap))}
    for i in range(n_img):
        inds = np.argsort(sims[i])[::-1]
        out["i2t"][i] = min(np.where(inds == c)[0][0] for c in range(caps_per_image * i, caps_per_image * (i + 1)))
        out["i2t_top1"][i] = inds[0]
    by_caption = sims.T
    for c in range(n_cap):
        inds = np.argsort(by_caption[c])[::-1]
        out["t2i"][c] = np.where(inds == c // caps_per_image)[0][0]
        out["t2i_top1"][c] = inds[0]
    return out


def _mismatches(reference: dict[str, np.ndarray], metrics: dict[str, float], ranks: dict) -> list[str]:
    """Names of the ranks, recalls and top-1 of ``retrieval_metrics`` output that differ from ``reference``."""
    bad = [f"{d} ranks" for d in ("i2t", "t2i") if not np.array_equal(ranks[d].ranks, reference[d])]
    bad += [f"{d} top1" for d in ("i2t", "t2i")
            if ranks[d].top1 is not None and not np.array_equal(ranks[d].top1, reference[f"{d}_top1"])]
    return bad + [key for key, value in _reference_metrics(reference).items() if metrics.get(key) != value]


def _reference_metrics(reference: dict[str, np.ndarray]) -> dict[str, float]:
    """The official metric formulas on reference ranks: R@K = 100 * mean(rank < K), medr, meanr, rsum."""

    out: dict[str, float] = {}
    for d in ("i2t", "t2i"):
        r = reference[d]
        out.update({f"{d}_r{k}": 100.0 * len(np.where(r < k)[0]) / len(r) for k in (1, 5, 10)})
        out.update({f"{d}_medr": float(np.floor(np.median(r)) + 1), f"{d}_meanr": float(r.mean() + 1)})
    out["rsum"] = (out["i2t_r1"] + out["i2t_r5"] + out["i2t_r10"]  # left to right as the official code (sum()
                   + out["t2i_r1"] + out["t2i_r5"] + out["t2i_r10"])  # compensates from Python 3.12 on)
    return out


RANKING_CASES = {"F30K 1K": 1000, "COCO 5K": 5000}


RANKING_VARIANTS = {  # name -> (retrieval_metrics keywords, on the CUDA device)
    "ours (pessimistic, top-1)": ({}, False),
    "ours (pessimistic, no top-1)": ({"top1": False}, False),
    "ours (stable, top-1)": ({"ties": "stable"}, False),
    "ours, torch backend (CPU)": ({"backend": "torch"}, False),
    "ours, torch backend (CUDA)": ({"backend": "torch"}, True),
}


def read_once_ms(sims: np.ndarray, repeats: int = 20) -> float:
    """Median ms of one read of ``sims`` (a float32 sum over the whole matrix with torch's threads): the floor
    a one-pass ranking can approach, at the machine's memory bandwidth."""
    matrix = torch.from_numpy(sims)
    return time_call(lambda: matrix.sum(), repeats)


def ranking_speed(repeats: int = 20, cuda: bool = False) -> pd.DataFrame:
    """Rows per (matrix, variant): median time of ``retrieval_metrics`` (ms), the official-style time (ms,
    median of 2 calls for 1K, 1 call for 5K), the ratio, the time of one read of the matrix
    (:func:`read_once_ms`, GB/s) and ours as a multiple of it (CPU rows), and whether ranks, recalls and top-1
    are identical. Raises if any differ."""
    rows = []
    for case, n_img in RANKING_CASES.items():
        sims = tie_free_sims(n_img)
        reference = official_style_ranks(sims)
        official_ms = time_call(lambda sims=sims: official_style_ranks(sims), 2 if n_img <= 1000 else 1, warmup=0)
        read_ms = read_once_ms(sims, repeats)
        for variant, (kwargs, on_cuda) in RANKING_VARIANTS.items():
            if on_cuda and not cuda:
                continue
            scores = torch.from_numpy(sims).cuda() if on_cuda else sims
            metrics, ranks = retrieval_metrics(scores, **kwargs)
            slow = kwargs.get("backend") == "torch" and not on_cuda  # seconds a call: fewer repeats
            ms = time_call(lambda scores=scores, kwargs=kwargs: retrieval_metrics(scores, **kwargs),
                           max(3, repeats // 5) if slow else repeats, warmup=1 if slow else 3)
            bad = _mismatches(reference, metrics, ranks)
            if bad:
                raise RuntimeError(f"ranking bench, {case}, {variant}: differs from the official style in {bad}")
            rows.append({"matrix": f"{case} ({n_img}x{5 * n_img})", "variant": variant, "time (ms)": ms,
                         "official-style (ms)": official_ms, "speed-up": official_ms / ms,
                         "one read (ms)": read_ms, "read GB/s": sims.nbytes / read_ms / 1e6,
                         "x one read": float("nan") if on_cuda else ms / read_ms,
                         "identical ranks, recalls, top-1": "yes"})
    return pd.DataFrame(rows)
