"""Training under ``torchrun``: the process group, each rank's device and the few decisions one rank makes.

``torchrun --nproc_per_node=N -m itrlib train --config ...`` starts N processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`join_process_group` reads them
and joins the default group (gloo on CPU, NCCL on CUDA; rank r uses ``cuda:LOCAL_RANK``). Without those
variables, or with ``WORLD_SIZE=1``, training runs in one process and nothing here does anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from itrlib.devices import resolve_device
from itrlib.errors import ConfigError, ItrlibError

T = TypeVar("T")
COLLECTIVE_TIMEOUT = timedelta(hours=12)
"""How long a rank waits in a collective: the other ranks wait while rank 0 validates (a pairwise model's
dev evaluation can take hours on a CPU). A rank that fails ends the others at once (torchrun stops them)."""
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    joined: bool = False
    """Whether this Trainer joined the process group (and leaves it when it closes)."""

    @property
    def main(self) -> bool:
        """Rank 0: the one that locks the run folder, writes every file and validates."""
        return self.rank == 0


def torchrun_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when unset); ConfigError when it is not a positive integer."""
    value = os.environ.get("WORLD_SIZE", "1")
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"WORLD_SIZE={value!r} is not a positive integer (torchrun sets it; unset it to train "
                          f"in one process)")
    return int(value)


def join_process_group(device_setting: str, setting: str = "train.device") -> tuple[Ranks, torch.device]:
    """Join the default process group when started by torchrun with more than one process; returns the ranks
    and this rank's device. With one process: ``(Ranks(), resolve_device(device_setting))``."""
    world = torchrun_world_size()
    if world == 1 and not dist.is_initialized():
        return Ranks(), resolve_device(device_setting, setting)
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing and not dist.is_initialized():
        raise ConfigError(f"WORLD_SIZE={world} but {', '.join(missing)} unset: start distributed training with "
                          f"torchrun --nproc_per_node={world} -m itrlib train ...")
    device = resolve_device(device_setting, setting)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is not None and world > 1:
            raise ConfigError(f"{setting}={device_setting!r} names one GPU, but under torchrun every rank uses "
                              f"its own (cuda:LOCAL_RANK): set {setting}=cuda or auto")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, joined), device


def leave_process_group(ranks: Ranks) -> None:
    """Destroy the default group if :func:`join_process_group` created it."""
    if ranks.joined and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (nothing in one process)."""
    if ranks.world_size > 1:
        dist.barrier()


def from_main(ranks: Ranks, value: Any) -> Any:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if ranks.world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_on_main(ranks: Ranks, action: Callable[..., T], *args: Any) -> T | None:
    """Run ``action(*args)`` on rank 0 only and return its result there (``None`` on the other ranks); an
    ItrlibError it raises is raised on every rank, so no rank waits for one that stopped."""
    if ranks.world_size == 1:
        return action(*args)
    result, error = None, None
    if ranks.main:
        try:
            result = action(*args)
        except ItrlibError as exc:
            error = exc
    error = from_main(ranks, error)
    if error is not None:
        raise error
    return result


def gather_objects(ranks: Ranks, value: Any) -> list[Any]:
    """Every rank's ``value`` in rank order, on every rank (``[value]`` in one process)."""
    if ranks.world_size == 1:
        return [value]
    values: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(values, value)
    return values
