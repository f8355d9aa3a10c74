"""Timing helpers of the benchmarks: the median of repeated calls, one timed call, the machine's float32
matrix-product rate (the yardstick of the scoring benches)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


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


def sgemm_rate(device: torch.device | str = "cpu", size: int = 2048, repeats: int = 5) -> float:
    """The machine's float32 matrix-product rate in GFLOP/s: the median of ``repeats`` (size x size) products."""
    device = torch.device(device)
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / time_call(lambda: a @ b, repeats, warmup=1) * 1e3 / 1e9


def one_timed_call(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float]:
    fn()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    scores = fn()
    synchronize(device)
    return scores, time.perf_counter() - start


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
