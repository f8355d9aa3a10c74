"""``make bench``: micro-benchmarks, each printed as a Markdown table and saved under outputs/bench/.

- ``afa``: the cost of aggregation + MAX_dim selection against the MLP it follows (the issue's setting:
  batch 128 x 36 regions x 1024-d, captions of 12-40 tokens), forward and forward+backward.
- ``ranking``: ``retrieval_metrics`` against a per-query argsort written in the style of the official
  VSE-infinity evaluation, on the same tie-free F30K 1K (1000 x 5000) and COCO 5K (5000 x 25000) float32
  matrices; the bench fails if ranks, recalls or top-1 differ.

``python -m itrlib.bench --only ranking`` runs one of them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from itrlib.evaluation.metrics import _lanes, retrieval_metrics
from itrlib.io import atomic_write_text
from itrlib.nn.aggregation import aggregate_tokens, masked_max, merge_count, random_order
from itrlib.nn.mlp import ResidualProjection


def time_call(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds (CUDA synchronised when in use)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def afa_enhancement(device: torch.device, batch: int = 128, dim: int = 1024, repeats: int = 20) -> pd.DataFrame:
    """Rows per modality: MLP time vs aggregation + selection time (ms), forward and forward+backward."""
    torch.manual_seed(0)
    rows = []
    cases = {"image (36 regions, 2048-d in)": (torch.full((batch,), 36), 2048),
             "text (12-40 tokens, 768-d in)": (torch.randint(12, 41, (batch,)), 768)}
    for name, (lengths, in_dim) in cases.items():
        lengths = lengths.to(device)
        mlp = ResidualProjection(in_dim, dim).to(device)
        x = torch.randn(batch, int(lengths.max()), in_dim, device=device)
        k_eff = merge_count(lengths, ratio=0.25)
        tokens = mlp(x).detach().requires_grad_()

        def aggregate_select(tokens=tokens, lengths=lengths, k_eff=k_eff):
            merged, new = aggregate_tokens(tokens, lengths, k_eff, random_order(lengths, tokens.shape[1]))
            return masked_max(merged, new)

        def mlp_fwd_bwd(mlp=mlp, x=x):
            mlp(x).sum().backward()

        def agg_fwd_bwd(fn=aggregate_select):
            fn().sum().backward()

        with torch.no_grad():
            mlp_fwd = time_call(lambda mlp=mlp, x=x: mlp(x), repeats)
            agg_fwd = time_call(aggregate_select, repeats)
        mlp_train = time_call(mlp_fwd_bwd, repeats)
        agg_train = time_call(agg_fwd_bwd, repeats)
        rows.append({"modality": name, "MLP fwd (ms)": mlp_fwd, "aggregation+MAX fwd (ms)": agg_fwd,
                     "ratio fwd": agg_fwd / mlp_fwd, "MLP fwd+bwd (ms)": mlp_train,
                     "aggregation+MAX fwd+bwd (ms)": agg_train, "ratio fwd+bwd": agg_train / mlp_train})
    return pd.DataFrame(rows)


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


def ranking_speed(repeats: int = 20, cuda: bool = False) -> pd.DataFrame:
    """Rows per (matrix, variant): median time of ``retrieval_metrics`` (ms), the official-style time (ms,
    median of 2 calls for 1K, 1 call for 5K), the ratio, and whether ranks, recalls and top-1 are identical.
    Raises if any differ."""
    rows = []
    for case, n_img in RANKING_CASES.items():
        sims = tie_free_sims(n_img)
        reference = official_style_ranks(sims)
        official_ms = time_call(lambda sims=sims: official_style_ranks(sims), 2 if n_img <= 1000 else 1, warmup=0)
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
                         "identical ranks, recalls, top-1": "yes"})
    return pd.DataFrame(rows)


def _write(out: Path, name: str, header: str, table: pd.DataFrame) -> None:
    text = f"{header}\n\n{table.to_markdown(index=False, floatfmt='.2f')}\n"
    print(text)
    atomic_write_text(out / name, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", choices=("afa", "ranking"), help="run one benchmark (default: all)")
    args = parser.parse_args(argv)
    device, out, threads = torch.device(args.device), Path(args.out), torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.only in (None, "afa"):
        _write(out, "afa_enhancement.md", f"AFA enhancement cost, batch 128, embed 1024, device {device}, "
               f"torch threads {threads}", afa_enhancement(device, repeats=args.repeats))
    if args.only in (None, "ranking"):
        _write(out, "ranking.md", f"Ranking (retrieval_metrics) vs official-style per-query argsort, float32, "
               f"tie-free; CPU threads: torch {threads}, numba kernel {_lanes(5000)}, {cores} cores usable; "
               f"ours = median of {args.repeats} calls (torch backend on CPU: {max(3, args.repeats // 5)})",
               ranking_speed(args.repeats, cuda=device.type == "cuda"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
