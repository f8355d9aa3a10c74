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
above it and the equal ones, for the image queries (along the row) and the caption queries (down the columns)
at once, and keeps the running maxima for top-1. On the CPU a compiled, vectorised numba kernel reads the
matrix once: one contiguous band of rows per thread (threads: ``torch.get_num_threads()``), each with private
column counters merged at the end, two rows a pass so that the column state is read and written once per two
rows; maxima are taken over integer keys of the scores' bits, which vectorise where float maxima (with their
NaN rules) do not. Equal scores are counted without their side in that pass; only the rows holding a tie
(none in continuous scores) are read a second time to split them into lower and higher index. On other
devices (CUDA) torch operations over chunks of rows. Counts are integers, so the result depends neither on the
thread count nor on the chunk size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import torch
from numba.extending import overload

from itrlib.config import TIE_RULES
from itrlib.errors import DataError

BACKENDS = ("auto", "numba", "torch")


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
# Maxima are taken over integer keys of the scores' bits (float maxima vectorise only without NaN semantics).


def _key(bits):
    """Integer key of a float's bits (an int32 or int64 view) that orders like the float, -0.0 and +0.0 equal."""
    return bits if bits >= 0 else np.iinfo(type(bits)).min - bits


@overload(_key)
def _key_jit(bits):
    """``_key`` in compiled code, of the bits' own width: int32 keys keep the loops eight lanes wide."""
    if bits == numba.types.int32:
        return lambda bits: bits if bits >= 0 else np.int32(np.int32(-2147483648) - bits)
    return lambda bits: bits if bits >= 0 else np.int64(-9223372036854775808) - bits


@numba.njit(cache=True)
def _count_pair(sims, bits, i0, i1, best, gt_col, col_ge, col_key, col_arg, lane, top1, last, both):
    """Rows ``i0`` and ``i1`` of ``sims`` in one pass, ``bits`` its integer view; ``both`` False: ``i1 == i0``,
    the row counted once.

    Returns per row (#sims > best, #sims == best, the row's maximum key) and for the two rows together
    (#sims == gt_col, a caption's ground-truth score; #columns where a row is non-finite). Per column ``c`` of
    ``lane``: ``col_ge[lane, c] += #rows with sims >= gt_col[c]``; with ``top1`` the column's best key
    ``col_key`` and its image ``col_arg`` (a later image wins a tie if ``last``).
    """
    a0 = e0 = a1 = e1 = gt_equal = bad = np.int32(0)
    r0, r1, ln, pair = np.uint64(i0), np.uint64(i1), np.uint64(lane), np.int32(both)
    k0, k1 = _key(bits[r0, np.uint64(0)]), _key(bits[r1, np.uint64(0)])
    s0, s1, t0 = best[i0], best[i1], np.int32(i0)
    for c in range(np.uint64(sims.shape[1])):
        x0 = sims[r0, c]
        x1 = sims[r1, c]
        y = gt_col[c]
        a0 = np.int32(a0 + (x0 > s0))
        e0 = np.int32(e0 + (x0 == s0))
        a1 = np.int32(a1 + (x1 > s1))
        e1 = np.int32(e1 + (x1 == s1))
        gt_equal = np.int32(gt_equal + (x0 == y) + (x1 == y))
        bad = np.int32(bad + (((x0 - x0) + (x1 - x1)) != 0))  # NaN and inf give NaN
        col_ge[ln, c] += np.int32(np.int32(x0 >= y) + (np.int32(x1 >= y) & pair))
        if top1:
            u0 = _key(bits[r0, c])
            u1 = _key(bits[r1, c])
            k0 = max(k0, u0)
            k1 = max(k1, u1)
            second = (u1 > u0) | (last & (u1 == u0))
            u = u1 if second else u0
            m = col_key[ln, c]
            better = (u > m) | (last & (u == m))
            col_key[ln, c] = u if better else m
            a = col_arg[ln, c]
            t = np.int32(t0 + (np.int32(second) & pair))
            col_arg[ln, c] = np.int32(a + np.int32(better) * np.int32(t - a))  # a select would not be vectorised
    return a0, e0, k0, a1, e1, k1, gt_equal, bad


@numba.njit(cache=True)
def _row_top(bits, i, key, last):
    """Column of row ``i`` whose key is ``key`` (the row's maximum): the first such (the last if ``last``),
    found 64 columns at a time."""
    n_cap = bits.shape[1]
    row = np.uint64(i)
    for k in range((n_cap + 63) // 64):
        start = n_cap - 64 * (k + 1) if last else 64 * k
        lo, hi = np.uint64(max(start, 0)), np.uint64(min(start + 64, n_cap))
        hits = np.int32(0)
        for c in range(lo, hi):
            hits = np.int32(hits + (_key(bits[row, c]) == key))
        if hits:
            for c in range(hi - lo):
                column = hi - np.uint64(1) - c if last else lo + c
                if _key(bits[row, column]) == key:
                    return np.int64(column)
    return np.int64(-1)


@numba.njit(cache=True)
def _count_rows(sims, bits, i, j, best, gt_col, col_ge, col_key, col_arg, lane, top1, last):
    """``_count_pair`` of rows ``i`` and ``j`` (``j == i``: one row) with its flags as constants: a loop compiled
    for each case, without the tests of the others."""
    if j == i:
        if not top1:
            return _count_pair(sims, bits, i, j, best, gt_col, col_ge, col_key, col_arg, lane, False, False, False)
        if last:
            return _count_pair(sims, bits, i, j, best, gt_col, col_ge, col_key, col_arg, lane, True, True, False)
        return _count_pair(sims, bits, i, j, best, gt_col, col_ge, col_key, col_arg, lane, True, False, False)
    if not top1:
        return _count_pair(sims, bits, i, j, best, gt_col, col_ge, col_key, col_arg, lane, False, False, True)
    if last:
        return _count_pair(sims, bits, i, j, best, gt_col, col_ge, col_key, col_arg, lane, True, True, True)
    return _count_pair(sims, bits, i, j, best, gt_col, col_ge, col_key, col_arg, lane, True, False, True)


@numba.njit(cache=True)
def _store_row(row_stats, bits, i, above, equal, key, gt_equal, bad, top1, last):
    """Row ``i``'s counts into ``row_stats[:4, i]`` and, with ``top1``, the column of its maximum into
    ``row_stats[4, i]``."""
    row_stats[0, i], row_stats[1, i], row_stats[2, i], row_stats[3, i] = above, equal, gt_equal, bad
    if top1:
        row_stats[4, i] = _row_top(bits, i, key, last)


@numba.njit(parallel=True, cache=True)
def _count_kernel(sims, bits, best, gt_col, top1, last, row_stats, col_ge, col_key, col_arg):
    """One contiguous band of rows per lane (``col_ge.shape[0]`` lanes), each with its own column state, two
    rows a pass (the last row of an odd band alone). ``row_stats[:, i]``: (#above, #equal, #equal to a
    caption's ground truth in row ``i``'s pair, #non-finite columns of the pair (at its first row), top-1)."""
    lanes = col_ge.shape[0]
    n_img = sims.shape[0]
    for lane in numba.prange(lanes):
        hi = (lane + 1) * n_img // lanes
        for i in range(lane * n_img // lanes, hi, 2):
            j = min(i + 1, hi - 1)
            a0, e0, k0, a1, e1, k1, gt_equal, bad = _count_rows(sims, bits, i, j, best, gt_col, col_ge, col_key,
                                                                col_arg, lane, top1, last)
            _store_row(row_stats, bits, i, a0, e0, k0, gt_equal, bad, top1, last)
            if j != i:
                _store_row(row_stats, bits, j, a1, e1, k1, gt_equal, 0, top1, last)


@numba.njit(parallel=True, cache=True)
def _split_ties(sims, rows, best, gt_col, caps_per_image, row_lower, col_lower, col_higher):
    """Equal scores of ``rows`` split by index, ``col_lower.shape[0]`` lanes sharing the rows:
    ``row_lower[i]`` counts row ``i``'s scores equal to its ``best`` among the captions before its own; of the
    scores equal to a caption's ground truth ``gt_col[c]``, ``col_lower[lane, c]``/``col_higher[lane, c]``
    count those in rows of images before/after the caption's."""
    lanes = col_lower.shape[0]
    for lane in numba.prange(lanes):
        ln = np.uint64(lane)
        for k in range(lane * len(rows) // lanes, (lane + 1) * len(rows) // lanes):
            i = rows[k]
            row, start, end = np.uint64(i), np.uint64(caps_per_image * i), np.uint64(caps_per_image * (i + 1))
            s = best[i]
            lower = np.int32(0)
            for c in range(np.uint64(sims.shape[1])):
                x = sims[row, c]
                equal = x == gt_col[c]
                lower = np.int32(lower + ((c < start) & (x == s)))
                col_lower[ln, c] += equal & (c >= end)  # the caption's image comes after image i
                col_higher[ln, c] += equal & (c < start)
            row_lower[i] = lower


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


def _merge_columns(col_key: np.ndarray, col_arg: np.ndarray, last: bool) -> np.ndarray:
    """Top-1 image of each column from per-lane maxima (lanes, N_cap): lanes hold increasing row bands."""
    hit = col_key == col_key.max(axis=0)
    lane = hit.shape[0] - 1 - hit[::-1].argmax(axis=0) if last else hit.argmax(axis=0)
    return col_arg[lane, np.arange(col_arg.shape[1])].astype(np.int64)


def _tally_numba(sims: torch.Tensor, caps_per_image: int, top1: bool, last: bool) -> tuple[_Tally, _Tally]:
    """Both tallies of a CPU ``sims`` (N_img, N_cap) by ``_count_kernel`` (float16/bfloat16 become float32).

    The pass counts equal scores without their side; the few rows holding a tie are read again by
    ``_split_ties`` to split them into lower and higher index."""
    if sims.device.type != "cpu":
        raise ValueError(f"backend 'numba' needs CPU scores, got a {sims.device.type} tensor")
    _start_numba_pool()
    if sims.dtype not in (torch.float32, torch.float64):
        sims = sims.float()
    array = sims.detach().contiguous().numpy()
    bits = array.view(np.int32 if array.dtype == np.float32 else np.int64)
    best, gt_ties, gt_col = (t.numpy() for t in _ground_truth(torch.from_numpy(array), caps_per_image))
    (n_img, n_cap), lanes = array.shape, kernel_lanes(array.shape[0])
    row_stats = np.zeros((5, n_img), np.int64)
    col_ge = np.zeros((lanes, n_cap), np.int32)
    col_key = np.full((lanes, n_cap if top1 else 0), np.iinfo(bits.dtype).min, bits.dtype)
    col_arg = np.zeros(col_key.shape, np.int32)
    _count_kernel(array, bits, best, gt_col, top1, last, row_stats, col_ge, col_key, col_arg)
    if row_stats[3].any():
        _raise_if_non_finite(int(np.count_nonzero(~np.isfinite(array))), array.size)
    above, equal, gt_equal = row_stats[0], row_stats[1], row_stats[2]
    row_lower, col_lower, col_higher = np.zeros(n_img, np.int64), np.zeros_like(col_ge), np.zeros_like(col_ge)
    tied_rows = np.flatnonzero((equal > gt_ties) | (gt_equal > 2 * caps_per_image))
    _split_ties(array, tied_rows, best, gt_col, caps_per_image, row_lower, col_lower, col_higher)
    col_lower, col_higher = col_lower.sum(axis=0, dtype=np.int64), col_higher.sum(axis=0, dtype=np.int64)
    i2t = _Tally(above=above, tied_lower=row_lower, tied_higher=equal - gt_ties - row_lower,
                 top1=row_stats[4] if top1 else None)
    t2i = _Tally(above=col_ge.sum(axis=0, dtype=np.int64) - 1 - col_lower - col_higher, tied_lower=col_lower,
                 tied_higher=col_higher, top1=_merge_columns(col_key, col_arg, last) if top1 else None)
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
