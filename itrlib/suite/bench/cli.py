"""``python -m itrlib.suite.bench`` (``make bench``): runs the benchmarks (``--only`` one of them) and writes
each table as Markdown and JSON under ``--out`` (default ``outputs/bench/``)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch

import itrlib.suite.bench
from itrlib.evaluation.metrics import kernel_lanes
from itrlib.io import atomic_write_text
from itrlib.suite.bench.afa import afa_enhancement
from itrlib.suite.bench.evaluation_time import evaluation_time
from itrlib.suite.bench.global_scoring import global_scoring
from itrlib.suite.bench.mvsen_scoring import mvsen_scoring, plot_two_stage
from itrlib.suite.bench.ranking import ranking_speed
from itrlib.suite.bench.train_step import train_step
from itrlib.suite.report.plots import save_figure


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as Markdown: 2 decimals, except differences (columns named like ``max |delta|``) in
    scientific notation, so that a difference of 1e-6 shows as 1.0e-06, not 0.00."""
    formats = tuple(".1e" if "|delta|" in str(column) else ".2f" for column in table.columns)
    return table.to_markdown(index=False, floatfmt=formats)


def _write(out: Path, name: str, header: str, table: pd.DataFrame) -> None:
    """``out/name`` (Markdown: the header, then the table) and the same rows as JSON beside it (``.json``)."""
    text = f"{header}\n\n{markdown_table(table)}\n"
    print(text)
    atomic_write_text(out / name, text)
    atomic_write_text((out / name).with_suffix(".json"),
                      json.dumps({"setting": header, "rows": table.to_dict(orient="records")}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m itrlib.suite.bench", description=itrlib.suite.bench.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", choices=("afa", "ranking", "train_step", "global_scoring", "evaluation_time",
                                                 "mvsen_scoring"),
                        help="run one benchmark (default: all)")
    parser.add_argument("--steps", type=int, default=5, help="train_step: timed training steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="train_step: untimed warm-up steps per model")
    args = parser.parse_args(argv)
    device, out, threads = torch.device(args.device), Path(args.out), torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.only in (None, "afa"):
        _write(out, "afa_enhancement.md", f"AFA enhancement cost, batch 128, embed 1024, device {device}, "
               f"torch threads {threads}", afa_enhancement(device, repeats=args.repeats))
    if args.only in (None, "ranking"):
        _write(out, "ranking.md", f"Ranking (retrieval_metrics) vs official-style per-query argsort, float32, "
               f"tie-free; CPU threads: torch {threads}, numba kernel {kernel_lanes(5000)}, {cores} cores usable; "
               f"ours = median of {args.repeats} calls (torch backend on CPU: {max(3, args.repeats // 5)})",
               ranking_speed(args.repeats, cuda=device.type == "cuda"))
    if args.only in (None, "train_step"):
        profile: dict = {}
        table = train_step(device, steps=args.steps, warmup=args.warmup, profile=profile)
        _write(out, "train_step.md", f"One training step (losses + backward + gradient clipping + the optimiser, as "
               f"the trainer's step) of every model at the paper's sizes and its preset's batch: 36 regions x "
               f"2048-d, a random-weight BERT-base, embed 1024 (MVSEN: its paper widths), captions 8-16 tokens, "
               f"USER queue 2048; device {device}, torch threads {threads}, {cores} cores usable; median of "
               f"{args.steps} steps after {args.warmup} warm-up steps. The official-code column is the issue's "
               f"report on its 2-core CPU, not a measurement of ours; timings on a shared machine are noisy.", table)
        parts = pd.concat([table.assign(model=label) for label, table in profile.items()], ignore_index=True)
        _write(out, "train_step_profile.md", f"Each model's training step by part (same dimensions; device {device}, "
               f"torch threads {threads}); median of {args.steps} instrumented steps; a 'BERT part' row is part of "
               "the row before it and is not counted again in the whole step.",
               parts[["model", "part", "s (median)", "share of step"]])
    if args.only in (None, "global_scoring"):
        _write(out, "global_scoring.md", f"A global model's score matrix at the test sizes (random unit embeddings, "
               f"float32, device {device}, torch threads {threads}, {cores} cores usable): evaluation's block-sharded "
               "scoring beside one plain matrix product; median of 3 calls; fraction of the float32 matrix-product "
               "rate measured in the same run.", global_scoring(device))
    if args.only in (None, "evaluation_time"):
        _write(out, "evaluation_time.md", f"Projected evaluation seconds (encode every image and caption, score, rank "
               f"both directions) against the gallery size, at the paper's widths with a random-weight BERT-base "
               f"(36 regions x 2048-d, captions 8-16 tokens), device {device}, torch threads {threads}, {cores} cores "
               "usable. Rates measured in this run on 100 images x 500 captions (encoding and full scoring), on the "
               "F30K 1K and COCO 5K matrices (ranking; 25K scaled from 5K) and on the (1, 64) and (64, 1) blocks a "
               "two-stage rerank scores; two-stage = VSE∞'s whole evaluation + each direction model's encoding and "
               "rerank. The MVSEN ensemble is both directions' full scoring.", evaluation_time(device))
    if args.only in (None, "mvsen_scoring"):
        scoring, two_stage = mvsen_scoring(device)
        setting = (f"MVSEN pairwise scoring at the paper's widths (64 images x 256 captions of 10-20 words, d 1024, "
                   f"d_c 256, 3 GCN layers, random weights), float32, device {device}, torch threads {threads}, "
                   f"{cores} cores usable; one timed call each after a warm-up")
        _write(out, "mvsen_scoring.md", f"{setting}; the loop does the release's operations in shard_xattn's order "
               "(64-image blocks, one caption at a time). GFLOP/s count the batched network's multiply-adds "
               "(itrlib.suite.bench.mvsen_scoring.mvsen_macs) for both. Projected minutes = the pairs of a full "
               "evaluation (one direction) / the measured rate.", scoring)
        _write(out, "mvsen_two_stage.md", f"{setting}. Projected minutes of a COCO 5K evaluation (5,000 x 25,000) "
               "of one MVSEN direction model: two-stage (M candidates per query from a global model, rescored one "
               "query at a time at the rate measured on (1, M) and (M, 1) blocks; the global model's own scoring, "
               "a 5,000 x 25,000 matrix product, is not included) beside full scoring.", two_stage)
        figure = plot_two_stage(two_stage)
        save_figure(figure, out / "mvsen_two_stage.png")
        plt.close(figure)
    return 0
