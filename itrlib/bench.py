"""``make bench``: micro-benchmarks, each printed as a Markdown table and saved under outputs/bench/.

AFA: the cost of aggregation + MAX_dim selection against the MLP it follows (the issue's setting:
batch 128 x 36 regions x 1024-d, captions of 12-40 tokens), forward and forward+backward.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    table = afa_enhancement(device, repeats=args.repeats)
    header = f"AFA enhancement cost, batch 128, embed 1024, device {device}, torch threads {torch.get_num_threads()}"
    text = f"{header}\n\n{table.to_markdown(index=False, floatfmt='.2f')}\n"
    print(text)
    atomic_write_text(Path(args.out) / "afa_enhancement.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
