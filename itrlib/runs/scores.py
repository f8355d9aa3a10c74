"""Saved score matrices of a run folder: ``scores-<split>.npy`` (float32 or float16) + ``scores-<split>.json``.

The JSON says what the matrix is: split, data folder, shape, captions per image, the checkpoint it came
from (name, epoch, and the file's size and modification time, so a retrained run's old scores are
recognised as stale) and the dtype. Both files are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from itrlib.errors import DataError
from itrlib.io import atomic_save, atomic_write_json

SCORE_FILE_DTYPES = "float16, float32, float64 or an integer type"
"""The dtypes of score files that can be ranked (integers are ranked exactly, as float64)."""


def scores_path(run_dir: str | Path, split: str) -> Path:
    return Path(run_dir) / f"scores-{split}.npy"


def scores_meta_path(run_dir: str | Path, split: str) -> Path:
    return Path(run_dir) / f"scores-{split}.json"


def file_stamp(path: str | Path) -> list[int]:
    """[size, mtime_ns] of a file: changes when a checkpoint is rewritten."""
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


def write_scores(run_dir: str | Path, split: str, scores: torch.Tensor | np.ndarray, dtype: str, meta: dict
                ) -> Path:
    """Write ``scores`` (N_img, N_cap) as ``scores-<split>.npy`` in ``dtype`` and its description JSON."""
    if dtype not in ("float32", "float16"):
        raise ValueError(f"scores dtype must be float32 or float16, got {dtype!r}")
    array = np.ascontiguousarray(torch.as_tensor(scores).cpu().numpy().astype(dtype))
    path = scores_path(run_dir, split)
    atomic_save(path, lambda handle: np.save(handle, array), "the score matrix")
    atomic_write_json(scores_meta_path(run_dir, split),
                      {**meta, "split": split, "shape": list(array.shape), "dtype": dtype},
                      "the description of the score matrix")
    return path


def load_scores(run_dir: str | Path, split: str) -> tuple[np.ndarray, dict]:
    """(scores as float32 (N_img, N_cap), description) of a run's saved split; DataError if absent."""
    path, meta_path = scores_path(run_dir, split), scores_meta_path(run_dir, split)
    if not path.is_file() or not meta_path.is_file():
        raise DataError(f"{path} (with {meta_path.name}) does not exist: evaluate the run with "
                        "eval.save_scores=float32 (`python -m itrlib eval ... --save-scores float32`)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    scores = read_score_file(path)
    if list(scores.shape) != meta.get("shape"):
        raise DataError(f"{path}: shape {scores.shape} differs from {meta_path.name} ({meta.get('shape')})")
    return scores.astype(np.float32, copy=False), meta


def read_score_file(path: str | Path) -> np.ndarray:
    """A score matrix from a ``.npy`` file of real numbers (:data:`SCORE_FILE_DTYPES`); DataError for a missing
    or unreadable file or another dtype (complex, bool, dates, ...)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"score file {path} does not exist")
    try:
        scores = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as a .npy array ({exc})") from exc
    if not is_real_dtype(scores.dtype):
        raise DataError(f"{path}: scores of dtype {scores.dtype} cannot be ranked: expected real numbers "
                        f"({SCORE_FILE_DTYPES})")
    return scores


def is_real_dtype(dtype: np.dtype) -> bool:
    """Whether scores of ``dtype`` can be ranked: a float of at most 64 bits or an integer (not bool)."""
    return dtype.kind in "iu" or (dtype.kind == "f" and dtype.itemsize <= 8)
