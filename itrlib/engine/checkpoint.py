"""Checkpoints: written atomically, loaded with a clear error when missing or unreadable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from itrlib.errors import ItrlibError
from itrlib.io import atomic_save

LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_save(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ItrlibError(f"checkpoint {path} does not exist (has the run finished an epoch?)")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise ItrlibError(f"checkpoint {path} could not be read: {exc}") from exc
