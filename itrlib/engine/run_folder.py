"""What a run folder holds belongs to one run: its checkpoints are checked against the run's config before
they are used, and the leftovers of interrupted writes are removed.

Two configs describe the same run when they differ at most in :data:`RESUME_ALLOWED_DIFFERENCES`: where
the folder and the data live, how (not what) is computed, how often it is recorded, and ``train.epochs``
(raising it continues a finished run).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from itrlib.config import RunConfig, config_differences, from_dict
from itrlib.errors import ConfigError, ItrlibError
from itrlib.io import temp_files

RESUME_ALLOWED_DIFFERENCES = frozenset({
    "name", "output_dir", "data.root",  # where the run folder and the data live (moved folders still resume)
    "data.num_workers", "train.device", "train.eval_batch_size", "train.adamw",  # how the same numbers are computed
    "eval.max_pairs_per_block", "text.packed_bert",
    "train.log_every", "train.checkpoint_every", "eval.save_scores",  # what is recorded, and how often
    "train.keep_last",  # what is kept once the run has finished
    "train.epochs",  # raising it continues a finished run
})
FOREIGN_TEMP_AGE_S = 600
"""Temporary files of files the trainer does not own (e.g. ``eval-*.json``, written without the lock) are
removed only when older than this, so a running evaluation never loses its temporary file."""
_MAX_LISTED = 8


def stored_config(raw: dict | RunConfig | None, source: Path) -> RunConfig | None:
    """The config a checkpoint (or ``config.yaml``) was written with, validated by this version."""
    if raw is None or isinstance(raw, RunConfig):
        return raw
    try:
        return from_dict(raw)
    except ConfigError as exc:
        raise ItrlibError(f"{source}: its stored config is not valid for this version of itrlib ({exc})") from exc


def run_differences(stored: RunConfig, config: RunConfig) -> dict[str, tuple[Any, Any]]:
    """The differences between two configs that make them two different runs."""
    return {key: values for key, values in config_differences(stored, config).items()
            if key not in RESUME_ALLOWED_DIFFERENCES}


def check_same_run(stored: RunConfig | None, config: RunConfig, source: Path, hint: str) -> None:
    """Raise ItrlibError listing the keys in which ``source`` (written with ``stored``) is another run."""
    if stored is None:  # written before checkpoints carried their config: load_model_state still checks
        return
    differences = run_differences(stored, config)
    if differences:
        raise ItrlibError(f"{source} was written by a different config ({format_differences(differences)}); "
                          f"{hint}")


def load_model_state(model: torch.nn.Module, state: dict, source: Path, config: RunConfig,
                     feature_dim: int) -> None:
    """``model.load_state_dict(state["model"])``; a mismatch names the file, the known causes and a parameter."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        causes = []
        stored = stored_config(state.get("config"), source)
        if stored is not None and (differences := config_differences(stored, config)):
            causes.append(f"config differences: {format_differences(differences)}")
        if state.get("feature_dim") not in (None, feature_dim):
            causes.append(f"features of size {state['feature_dim']} in the checkpoint, {feature_dim} in the data")
        known = "; ".join(causes) or "its config is not stored, so the differing keys are unknown"
        raise ItrlibError(f"{source} was written by a different model/config and does not fit this one "
                          f"({known}); first mismatching parameter: "
                          f"{first_mismatch(model.state_dict(), state['model'])}") from exc


def first_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """The first parameter or buffer that differs in presence or shape between two state dicts."""
    for key, value in expected.items():
        if key not in found:
            return f"{key} missing from the checkpoint"
        if tuple(found[key].shape) != tuple(value.shape):
            return f"{key}: {tuple(found[key].shape)} in the checkpoint, {tuple(value.shape)} in the model"
    extra = next((key for key in found if key not in expected), None)
    return f"{extra} is not a parameter of the model" if extra else "none (values cannot be loaded)"


def format_differences(differences: dict[str, tuple[Any, Any]]) -> str:
    listed = [f"{key}: {old!r} -> {new!r}" for key, (old, new) in list(differences.items())[:_MAX_LISTED]]
    more = f", and {len(differences) - _MAX_LISTED} more" if len(differences) > _MAX_LISTED else ""
    return ", ".join(listed) + more


def remove_leftover_temps(run_dir: Path, owned: Collection[str]) -> tuple[int, int]:
    """Delete temporary files of interrupted atomic writes; return (files, bytes) freed.

    Call only while holding the run's lock: temporaries of ``owned`` files (written only by the lock's
    holder) are removed at once, others when older than :data:`FOREIGN_TEMP_AGE_S`.
    """
    count = size = 0
    now = time.time()
    for path, target in temp_files(run_dir).items():
        try:
            stat = path.stat()
            if target in owned or now - stat.st_mtime > FOREIGN_TEMP_AGE_S:
                path.unlink()
                count, size = count + 1, size + stat.st_size
        except FileNotFoundError:  # its writer finished or cleaned up meanwhile
            continue
    if count:
        warnings.warn(f"removed {count} temporary file(s) left by interrupted writes in {run_dir} "
                      f"({size} bytes freed)", RuntimeWarning, stacklevel=2)
    return count, size
