"""Checkpoints: written atomically, loaded with a clear error when missing, unreadable or not the suite's."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from itrlib.errors import ItrlibError
from itrlib.io import atomic_save

LAST = "last.pt"
BEST = "best.pt"
REQUIRED_KEYS = ("model", "feature_dim", "epoch")
"""Entries of every checkpoint the trainer writes (``best.pt`` and ``last.pt``)."""
RESUME_KEYS = ("optimizer", "batch_in_epoch", "global_step", "best", "rng", "metrics_lines")
"""Further entries of ``last.pt``: what a run resumes from."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically; a refused write (disk full, file too large, no permission) raises
    :class:`~itrlib.io.WriteError` naming the file and the OS error, and keeps the previous file."""
    atomic_save(path, lambda handle: torch.save(state, handle), "the checkpoint")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by the trainer; ItrlibError naming the file when it is missing, not a readable
    torch file, or not one of the suite's checkpoints (:data:`REQUIRED_KEYS`)."""
    path = Path(path)
    if not path.is_file():
        raise ItrlibError(f"checkpoint {path} does not exist (has the run finished an epoch?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]  # torch's first sentence
        raise ItrlibError(f"checkpoint {path} could not be read: it is truncated, damaged or not a torch file "
                          f"({reason})") from exc
    problem = _not_a_checkpoint(state)
    if problem:
        raise ItrlibError(f"checkpoint {path} is not a checkpoint of an itrlib run: {problem}; a run folder's "
                          f"{BEST}/{LAST} are written by `python -m itrlib train`, official USER/VSE∞ "
                          "checkpoints are evaluated with `python -m itrlib eval-official --arch user|vse "
                          "--checkpoint FILE`")
    return state


def _not_a_checkpoint(state: object) -> str | None:
    """What makes a loaded object something other than a trainer checkpoint, or None when it is one."""
    if not isinstance(state, Mapping):
        return f"it holds a {type(state).__name__}, not a dict with {', '.join(REQUIRED_KEYS)}"
    if state and all(isinstance(value, torch.Tensor) for value in state.values()):
        return "it is a bare state dict (parameter name -> tensor) without the entries feature_dim and epoch"
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        return f"it has no {', '.join(missing)} entr{'y' if len(missing) == 1 else 'ies'}"
    if not isinstance(state["model"], Mapping):
        return f"its model entry is a {type(state['model']).__name__}, not a state dict"
    feature_dim = state["feature_dim"]
    if isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 1:
        return f"its feature_dim entry is {feature_dim!r}, not a positive integer"
    return None
