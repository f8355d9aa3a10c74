"""Ranks and recalls of image-text retrieval (as the ``i2t``/``t2i`` of woodfrog/vse_infty; tie rules:
docs/PAPER_DIFFERENCES.md section 1), counted in one fused pass over the scores.

``sims`` is the (N_img, N_img * caps_per_image) score matrix; caption ``c`` belongs to image
``c // caps_per_image``, so image ``i`` owns the captions ``[caps_per_image * i, caps_per_image * (i + 1))``.
Ranks are 0-based.

- **i2t**: one query per image; its rank is the best (minimum) rank among its ground-truth captions.
- **t2i**: one query per caption; its rank is the rank of its single ground-truth image.

**Tie rules** (``ties=``). A query ranks its items by decreasing score; the rule orders equal scores.

- ``"pessimistic"`` (default): ties are broken against the query, every ground truth comes *after* the
  non-ground-truth items with an equal score. The rank is the number of non-ground-truth items scoring at
  least as high as the best ground truth: t2i ``rank = #{images with score >= s_gt} - 1``; i2t
  ``rank = #{captions with score >= best_gt} - #{ground-truth captions with score == best_gt}``. Ground
  truths tied only with each other do not count against the query (whichever comes first is a hit).
- ``"stable"``: the official VSE∞ order, ``np.argsort(scores, kind="stable")[::-1]``: among equal
  scores the *higher* index comes first. Item ``j`` is at position
  ``#{score > s_j} + #{score == s_j and index > j}``; i2t takes the minimum over the ground-truth captions,
  t2i the position of the ground-truth image.

Without ties both rules equal the official result exactly. ``Ranks.tied`` counts the queries whose (best)
ground-truth score equals the score of a non-ground-truth item: only their rank can depend on the rule.

``top1`` is the index of the highest-scoring item of each query: among equal maxima the first index under
``"pessimistic"`` (``torch.argmax``), the highest index under ``"stable"`` (the official ``inds[0]``).

**How.** No sort: a rank is a count of items scoring above the ground truth plus the ties the rule puts
before it. One pass over the rows of ``sims`` counts, against each query's ground-truth score, the items
above it and the equal items of lower and of higher index, for the image queries (along the row) and the
caption queries (down the columns) at once, and keeps the running maxima for top-1. On the CPU a compiled,
vectorised numba kernel reads the matrix once (one contiguous band of rows per thread, each with private
column counters, merged at the end; threads: ``torch.get_num_threads()``; a few rows pass each block of
columns before the next, so the block's column state is read from cache once per tile of rows, not once per
row); on other devices (CUDA) torch
operations over chunks of rows. Counts are integers, so the result depends neither on the thread count nor on
the chunk size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import torch

from itrlib.config import TIE_RULES
from itrlib.errors import DataError

BACKENDS = ("auto", "numba", "torch")
_COLUMN_BLOCK = 2048  # columns of the numba kernel's block (and slots of a row's running maximum: c -> c % 2048)
_ROW_TILE = 4  # rows the kernel passes over one column block before the next: its column state is read once


@dataclass(frozen=True)
class Ranks:
    """Per-query results of one direction (Q queries).

    ``ranks`` (Q,) int64 0-based rank of the ground truth; ``top1`` (Q,) int64 index of the best-scoring item,
    None when not asked for; ``tied`` the number of queries whose (best) ground-truth score equals the score
    of a non-ground-truth item.
    """

    ranks: np.ndarray
    top1: np.ndarray | None
    tied: int


@dataclass(frozen=True)
class _Tally:
    """Counts of one direction against each query's (best) ground-truth score, each (Q,) int64.

    ``above``: items scoring higher; ``tied_lower``/``tied_higher``: non-ground-truth items scoring equal,
    with a lower/higher index than the ground truth(s); ``top1``: (Q,) int64 or None.
    """

    above: np.ndarray
    tied_lower: np.ndarray
    tied_higher: np.ndarray
    top1: np.ndarray | None

    def ranks(self, ties: str) -> Ranks:
        """``Ranks`` under the tie rule ``ties``: pessimistic counts every tie, stable the higher-index ones."""
        tied = self.tied_lower + self.tied_higher
        ranks = self.above + (tied if ties == "pessimistic" else self.tied_higher)
        return Ranks(ranks=ranks, top1=self.top1, tied=int(np.count_nonzero(tied)))


def _validated(sims: torch.Tensor | np.ndarray, caps_per_image: int, check_finite: bool = True) -> torch.Tensor:
    """``sims`` as a floating tensor (integer input becomes float64, exact) after :func:`check_score_matrix`."""
    if caps_per_image < 1:
        raise ValueError(f"caps_per_image must be >= 1, got {caps_per_image}")
    return check_score_matrix(sims, caps_per_image, check_finite)


def check_score_matrix(sims: torch.Tensor | np.ndarray, caps_per_image: int = 5, check_finite: bool = True
                       ) -> torch.Tensor:
    """The one check of a score matrix to rank: ``sims`` (N_img, caps_per_image * N_img) of a real dtype,
    finite (unless ``check_finite`` is off), returned as a floating tensor (integers become float64, exactly).
    DataError otherwise, naming what is wrong."""
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
    # fast path: a sum is finite only if every term is (a finite overflow just falls through to the count)
    if check_finite and not torch.isfinite(sims.sum()):
        _raise_if_non_finite(int((~torch.isfinite(sims)).sum()), sims.numel())
    return sims


def _raise_if_non_finite(bad: int, total: int) -> None:
    if bad:
        raise DataError(f"scores contain {bad} non-finite value(s) (NaN or inf) out of {total}")


def _check_options(ties: str, backend: str, chunk: int) -> None:
    if ties not in TIE_RULES:
        raise ValueError(f"unknown tie rule {ties!r}; valid: {', '.join(TIE_RULES)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 rows, got {chunk}")


def _tallies(sims: torch.Tensor | np.ndarray, caps_per_image: int, chunk: int, ties: str, top1: bool,
             backend: str) -> tuple[_Tally, _Tally]:
    """Validated ``sims`` (N_img, N_img*caps_per_image) counted by ``backend``: the i2t and the t2i tally."""
    sims = torch.as_tensor(sims)
    use_numba = backend == "numba" or (backend == "auto" and sims.device.type == "cpu")
    sims = _validated(sims, caps_per_image, check_finite=not use_numba)  # the kernel checks as it reads
    _check_options(ties, backend, chunk)
    last = ties == "stable"
    if use_numba:
        return _tally_numba(sims, caps_per_image, top1, last)
    return _tally_torch(sims, caps_per_image, chunk, top1, last)


def _ground_truth(sims: torch.Tensor, caps_per_image: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best ground-truth score of each image (N_img,), how many of its captions reach it (N_img,) int64, and
    the ground-truth score of each caption (N_cap,)."""
    n_img = sims.shape[0]
    columns = torch.arange(n_img, device=sims.device)[:, None] * caps_per_image + torch.arange(
        caps_per_image, device=sims.device)
    gt = sims.gather(1, columns)  # (N_img, caps): gt[i, k] = sims[i, caps_per_image * i + k]
    best = gt.amax(dim=1)
    return best, (gt == best[:, None]).sum(dim=1), gt.reshape(-1)


# ---------------------------------------------------------------------------------------------------- numba
# The loops index whole arrays with unsigned indices (no negative-index wrap-around, no array views, whose
# shared reference counts would make the threads contend) and sum into int32, so that LLVM vectorises them.


@numba.njit(cache=True)
def _count_span(sims, i, c0, c1, best, gt_col, col_counts, lane, side):
    """Columns ``[c0, c1)`` of row ``i``: (#sims > best, #sims == best, #non-finite); per column ``c``
    ``col_counts[lane, 0, c] += sims[i, c] > gt_col[c]`` and ``col_counts[lane, 2 - side, c] += ... ==``."""
    above = np.int32(0)
    equal = np.int32(0)
    bad = np.int32(0)
    row, ln, zero, eq = np.uint64(i), np.uint64(lane), np.uint64(0), np.uint64(2 - side)
    for c in range(np.uint64(c0), np.uint64(c1)):
        x = sims[row, c]
        y = gt_col[c]
        above = np.int32(above + (x > best))
        equal = np.int32(equal + (x == best))
        bad = np.int32(bad + ((x - x) != 0))  # NaN and inf give NaN
        col_counts[ln, zero, c] += x > y
        col_counts[ln, eq, c] += x == y
    return above, equal, bad


@numba.njit(cache=True)
def _count_span_top1(sims, i, c0, c1, best, gt_col, col_counts, lane, side, col_max, col_arg, row_max, r, base,
                     last):
    """``_count_span`` plus the running maxima: ``col_max[lane, c]``/``col_arg[lane, c]`` the best score of
    column ``c`` and its image (a later image wins a tie if ``last``), ``row_max[lane, r, c - base]`` the best
    score of this row (row ``r`` of the tile) in that slot."""
    above = np.int32(0)
    equal = np.int32(0)
    bad = np.int32(0)
    row, ln, zero, eq, image = np.uint64(i), np.uint64(lane), np.uint64(0), np.uint64(2 - side), np.int32(i)
    tile_row = np.uint64(r)
    for c in range(np.uint64(c0), np.uint64(c1)):
        x = sims[row, c]
        y = gt_col[c]
        above = np.int32(above + (x > best))
        equal = np.int32(equal + (x == best))
        bad = np.int32(bad + ((x - x) != 0))
        col_counts[ln, zero, c] += x > y
        col_counts[ln, eq, c] += x == y
        m = col_max[ln, c]
        better = (x > m) | (last & (x == m))
        col_max[ln, c] = x if better else m
        a = col_arg[ln, c]
        col_arg[ln, c] = a + np.int32(better) * (image - a)  # a select here would not be vectorised
        k = c - np.uint64(base)
        m = row_max[ln, tile_row, k]
        row_max[ln, tile_row, k] = x if x > m else m
    return above, equal, bad


@numba.njit(cache=True)
def _row_top(sims, i, row_max, lane, r, last):
    """Column of the maximum of row ``i`` given ``row_max[lane, r]`` (slot k: max of ``sims[i, k::slots]``;
    folded in halves, in place, down to 64 slots or an odd count): the first column among equal maxima (the
    last if ``last``)."""
    slots, ln, tr = row_max.shape[2], np.uint64(lane), np.uint64(r)
    while slots > 64 and slots % 2 == 0:
        slots //= 2
        for k in range(np.uint64(slots)):
            m = row_max[ln, tr, k + np.uint64(slots)]
            row_max[ln, tr, k] = m if m > row_max[ln, tr, k] else row_max[ln, tr, k]
    best = row_max[ln, tr, 0]
    for k in range(1, slots):
        best = row_max[ln, tr, k] if row_max[ln, tr, k] > best else best
    top = -1
    for k in range(slots):
        if row_max[ln, tr, k] == best:
            for c in range(k, sims.shape[1], slots):
                if sims[i, c] == best and (top < 0 or (c > top if last else c < top)):
                    top = c
    return top


@numba.njit(cache=True)
def _count_band(sims, best, gt_col, caps_per_image, lo, hi, lane, top1, last, block, tile, row_counts, row_top,
                col_counts, col_max, col_arg, row_max):
    """Rows ``[lo, hi)`` of ``sims`` with the column state of ``lane``, ``tile`` rows at a time: each block of
    ``block`` columns is passed by every row of the tile, in order, before the next block (the block's column
    state stays in cache across the tile). Row ``i`` is cut at ``p = caps_per_image * i`` (the captions before
    image ``i``'s); for top-1 its blocks are folded onto the ``block`` slots of ``row_max[lane, i - tile
    start]``. ``row_counts[:, i]`` gets (#above, #equal before p, #equal from p, #non-finite),
    ``col_counts[lane]`` (3, N_cap) accumulates (#above, #equal from rows with c >= p, i.e. images up to the
    caption's own, #equal from rows with c < p, the images after it)."""
    n_cap = sims.shape[1]
    for t0 in range(lo, hi, tile):
        t1 = min(t0 + tile, hi)
        if top1:
            for r in range(t1 - t0):
                for k in range(block):
                    row_max[lane, r, k] = -np.inf
        for base in range(0, n_cap, block):
            end = min(base + block, n_cap)
            for i in range(t0, t1):
                mid = min(max(min(caps_per_image * i, n_cap), base), end)
                for c0, c1, side in ((base, mid, 0), (mid, end, 1)):
                    if top1:
                        counts = _count_span_top1(sims, i, c0, c1, best[i], gt_col, col_counts, lane, side,
                                                  col_max, col_arg, row_max, i - t0, base, last)
                    else:
                        counts = _count_span(sims, i, c0, c1, best[i], gt_col, col_counts, lane, side)
                    row_counts[0, i] += counts[0]
                    row_counts[1 + side, i] += counts[1]
                    row_counts[3, i] += counts[2]
        if top1:
            for i in range(t0, t1):
                row_top[i] = _row_top(sims, i, row_max, lane, i - t0, last)


@numba.njit(parallel=True, cache=True)
def _count_kernel(sims, best, gt_col, caps_per_image, top1, last, block, tile, row_counts, row_top, col_counts,
                  col_max, col_arg, row_max):
    """One contiguous band of rows per lane (``col_counts.shape[0]`` lanes), each with its own column state."""
    lanes = col_counts.shape[0]
    n_img = sims.shape[0]
    for lane in numba.prange(lanes):
        _count_band(sims, best, gt_col, caps_per_image, lane * n_img // lanes, (lane + 1) * n_img // lanes, lane,
                    top1, last, block, tile, row_counts, row_top, col_counts, col_max, col_arg, row_max)


def kernel_lanes(n_img: int) -> int:
    """Row bands (threads) of the kernel: torch's thread count (``torch.set_num_threads``), within numba's
    pool and at most one per image."""
    _start_numba_pool()
    return max(1, min(torch.get_num_threads(), numba.get_num_threads(), n_img))


def _start_numba_pool() -> None:
    """Start numba's thread pool (once per process) without changing torch's thread count.

    Numba's OpenMP layer sets the OpenMP thread count it shares with torch to its own (every logical CPU) when
    its pool starts. torch would then reduce with another number of threads for the rest of the process, so
    float results (BatchNorm statistics, sums) of a training step after the first evaluation would differ
    from the same step in a fresh process: a resumed run or a second run would not repeat the first.
    """
    threads = torch.get_num_threads()
    numba.get_num_threads()  # starts the pool on first use
    torch.set_num_threads(threads)


def _merge_columns(col_max: np.ndarray, col_arg: np.ndarray, last: bool) -> np.ndarray:
    """Top-1 image of each column from per-lane maxima (lanes, N_cap): lanes hold increasing row bands."""
    hit = col_max == col_max.max(axis=0)
    lane = hit.shape[0] - 1 - hit[::-1].argmax(axis=0) if last else hit.argmax(axis=0)
    return col_arg[lane, np.arange(col_arg.shape[1])].astype(np.int64)


def _tally_numba(sims: torch.Tensor, caps_per_image: int, top1: bool, last: bool) -> tuple[_Tally, _Tally]:
    """Both tallies of a CPU ``sims`` (N_img, N_cap) by ``_count_kernel`` (float16/bfloat16 become float32)."""
    if sims.device.type != "cpu":
        raise ValueError(f"backend 'numba' needs CPU scores, got a {sims.device.type} tensor")
    _start_numba_pool()
    if sims.dtype not in (torch.float32, torch.float64):
        sims = sims.float()
    array = sims.detach().contiguous().numpy()
    best, gt_ties, gt_col = (t.numpy() for t in _ground_truth(torch.from_numpy(array), caps_per_image))
    (n_img, n_cap), lanes = array.shape, kernel_lanes(array.shape[0])
    block = min(_COLUMN_BLOCK, n_cap)
    row_counts = np.zeros((4, n_img), np.int64)
    row_top = np.zeros(n_img, np.int64)
    col_counts = np.zeros((lanes, 3, n_cap), np.int32)
    col_max = np.full((lanes, n_cap if top1 else 0), -np.inf, array.dtype)
    col_arg = np.zeros(col_max.shape, np.int32)
    row_max = np.empty((lanes, _ROW_TILE, block) if top1 else (lanes, 0, 0), array.dtype)
    _count_kernel(array, best, gt_col, caps_per_image, top1, last, block, _ROW_TILE, row_counts, row_top,
                  col_counts, col_max, col_arg, row_max)
    _raise_if_non_finite(int(row_counts[3].sum()), array.size)
    col = col_counts.sum(axis=0, dtype=np.int64)
    i2t = _Tally(above=row_counts[0], tied_lower=row_counts[1], tied_higher=row_counts[2] - gt_ties,
                 top1=row_top if top1 else None)
    t2i = _Tally(above=col[0], tied_lower=col[1] - 1, tied_higher=col[2],
                 top1=_merge_columns(col_max, col_arg, last) if top1 else None)
    return i2t, t2i


# ---------------------------------------------------------------------------------------------------- torch


def _argmax(x: torch.Tensor, dim: int, last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Max of ``x`` along ``dim`` and its first index among equal maxima (the last if ``last``)."""
    if not last:
        return x.max(dim=dim)
    values, index = x.flip(dim).max(dim=dim)
    return values, x.shape[dim] - 1 - index


def _tally_torch(sims: torch.Tensor, caps_per_image: int, chunk: int, top1: bool, last: bool
                 ) -> tuple[_Tally, _Tally]:
    """Both tallies of ``sims`` (N_img, N_cap) with torch operations on its device, ``chunk`` rows a step."""
    n_img, n_cap = sims.shape
    best, gt_ties, gt_col = _ground_truth(sims, caps_per_image)
    columns = torch.arange(n_cap, device=sims.device)
    row_counts: list[torch.Tensor] = []  # per chunk (3, n): above, equal before the image's captions, equal from
    row_top: list[torch.Tensor] = []
    col_counts = torch.zeros((3, n_cap), dtype=torch.int32, device=sims.device)  # above, equal up to, after gt
    col_best, col_top = torch.full_like(gt_col, -torch.inf), torch.zeros(n_cap, dtype=torch.int64, device=sims.device)
    for start in range(0, n_img, chunk):
        rows = sims[start:start + chunk]  # (n, N_cap)
        images = torch.arange(start, start + rows.shape[0], device=sims.device)
        lower = columns < images[:, None] * caps_per_image  # caption before the image's; image after the caption's
        row_counts.append(_counts(rows, best[start:start + chunk, None], lower, dim=1))
        col_counts += _counts(rows, gt_col, ~lower, dim=0)
        if top1:
            row_top.append(_argmax(rows, 1, last)[1])
            values, index = _argmax(rows, 0, last)
            better = values >= col_best if last else values > col_best  # earlier chunks hold lower indices
            col_best, col_top = torch.where(better, values, col_best), torch.where(better, index + start, col_top)
    row = torch.cat(row_counts, dim=1).cpu().numpy().astype(np.int64)
    col = col_counts.cpu().numpy().astype(np.int64)
    i2t = _Tally(above=row[0], tied_lower=row[1], tied_higher=row[2] - gt_ties.cpu().numpy(),
                 top1=torch.cat(row_top).cpu().numpy() if top1 else None)
    t2i = _Tally(above=col[0], tied_lower=col[1] - 1, tied_higher=col[2], top1=col_top.cpu().numpy() if top1 else None)
    return i2t, t2i


def _counts(rows: torch.Tensor, reference: torch.Tensor, first: torch.Tensor, dim: int) -> torch.Tensor:
    """(3, ...) int32 counts along ``dim`` of ``rows`` (n, N_cap) against ``reference`` (broadcast): above,
    equal where the mask ``first`` holds, equal elsewhere."""
    equal = rows == reference
    in_first = (equal & first).sum(dim=dim, dtype=torch.int32)
    return torch.stack([(rows > reference).sum(dim=dim, dtype=torch.int32), in_first,
                        equal.sum(dim=dim, dtype=torch.int32) - in_first])


# ---------------------------------------------------------------------------------------------------- recalls


def recall_summary(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``{"r1", "r5", "r10", "medr", "meanr"}`` of 0-based ``ranks`` (Q,): R@K = 100*mean(rank < K)."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {ranks.shape}")
    summary = {f"r{k}": 100.0 * int(np.count_nonzero(ranks < k)) / ranks.size for k in ks}
    summary["medr"] = float(np.floor(np.median(ranks)) + 1)
    summary["meanr"] = float(ranks.mean() + 1)
    return summary


def retrieval_metrics(sims: torch.Tensor | np.ndarray, caps_per_image: int = 5, *, ties: str = "pessimistic",
                      top1: bool = True, backend: str = "auto", chunk: int = 1024
                      ) -> tuple[dict[str, float], dict[str, Ranks]]:
    """Metrics ``i2t_{r1,r5,r10,medr,meanr}``, ``t2i_...``, ``rsum`` and ``{"i2t": Ranks, "t2i": Ranks}``
    (image queries: top1 = caption index; caption queries: top1 = image index), from one fused pass.

    ``sims`` (N_img, N_img*caps_per_image); ``ties`` one of ``TIE_RULES``; ``top1=False`` skips the top-1
    indices (``Ranks.top1`` is None); ``backend`` "auto" uses numba for CPU tensors and arrays, torch
    otherwise; ``chunk`` rows are compared per step by the torch backend (memory: a few chunk x N_cap booleans).
    """
    i2t, t2i = _tallies(sims, caps_per_image, chunk, ties, top1, backend)
    ranks = {"i2t": i2t.ranks(ties), "t2i": t2i.ranks(ties)}
    metrics: dict[str, float] = {}
    for direction, result in ranks.items():
        metrics.update({f"{direction}_{key}": value for key, value in recall_summary(result.ranks).items()})
    metrics["rsum"] = (metrics["i2t_r1"] + metrics["i2t_r5"] + metrics["i2t_r10"]
                       + metrics["t2i_r1"] + metrics["t2i_r5"] + metrics["t2i_r10"])
    return metrics, ranks
