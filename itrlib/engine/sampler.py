"""Epoch-seeded batch order: a pure function of (seed, epoch), so resuming mid-epoch is exact."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from itrlib.seeds import derived_seed


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled batches of ``batch_size`` indices, dropping the last incomplete batch (as VSE∞).

    ``max_batches`` caps the batches per epoch (smoke runs). Under torch.distributed every rank draws the
    same global batches and yields its own consecutive ``batch_size / world_size`` of each (rank 0 the first).

    The permutation of epoch ``e`` comes from a generator seeded with ``(seed, e)``; ``start_batch``
    skips batches already trained before a resume.
    """

    def __init__(self, n_items: int, batch_size: int, seed: int, max_batches: int | None = None, *,
                 rank: int = 0, world_size: int = 1):
        if batch_size > n_items:
            raise ValueError(f"batch_size {batch_size} exceeds the {n_items} training pairs")
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not a multiple of the {world_size} processes")
        self.n_items, self.batch_size, self.seed, self.max_batches = n_items, batch_size, seed, max_batches
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        order = torch.randperm(self.n_items, generator=generator).tolist()
        stop = len(order) - len(order) % self.batch_size
        batches = [order[i:i + self.batch_size] for i in range(0, stop, self.batch_size)]
        return batches[: self.max_batches]

    def __iter__(self) -> Iterator[list[int]]:
        share = self.batch_size // self.world_size
        for batch in self.batches()[self.start_batch:]:
            yield batch[self.rank * share:(self.rank + 1) * share]

    def batches_per_epoch(self) -> int:
        full = self.n_items // self.batch_size
        return full if self.max_batches is None else min(full, self.max_batches)

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch
