"""Side inputs: per-image or per-caption arrays a model needs besides regions and tokens.

A model declares them as :class:`SideInput` specs (``RetrievalModel.side_inputs``); this module finds the
file of each beside the split's precomp files and loads it, for training and evaluation alike:

- ``{split}_{name}.npy``: a numeric array with one row per image (or per caption), memory-mapped;
- ``{split}_{name}.txt``: one line per image (or per caption) of whitespace-separated numbers, e.g. the
  0/1 noun labels ``{split}_label.txt`` of the embedded dataset (MVSEN's multi-label task).

Rows must match the split exactly; when the split was cut to its first ``max_images`` images (dev), the
side arrays are cut the same way. A spec with a ``width`` (set by the model from its config, e.g. MVSEN's
``model.num_labels``) also fixes the number of values per row. Floating rows are checked to be finite when
an item is loaded (:func:`itrlib.data.datasets`), and a text file is checked when it is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from itrlib.data.precomp import PrecompSplit
from itrlib.errors import DataError

PER = ("image", "caption")
SUFFIXES = (".npy", ".txt")


@dataclass(frozen=True)
class SideInput:
    """One side file: ``{split}_{name}.npy`` or ``{split}_{name}.txt``, one row per image or per caption."""

    name: str
    per: str = "image"
    how_to_build: str = ""
    """How a user makes the file when it is missing (a command, with ``{root}`` for the precomp folder)."""
    width: int | None = None
    """Values per row the model expects (``None``: not checked); the model fills it in from its config."""
    width_key: str = ""
    """The config key that sets ``width`` (e.g. ``model.num_labels``), named when a file's width differs."""

    def __post_init__(self) -> None:
        if self.per not in PER:
            raise ValueError(f"SideInput {self.name!r}: per must be one of {PER}, got {self.per!r}")


@dataclass(frozen=True)
class SideArrays:
    """Loaded side inputs of one split: ``image`` name -> (N_img, ...), ``caption`` name -> (N_cap, ...)."""

    image: dict[str, np.ndarray] = field(default_factory=dict)
    caption: dict[str, np.ndarray] = field(default_factory=dict)


def side_input_path(split: PrecompSplit, name: str, how_to_build: str = "") -> Path:
    """The ``.npy`` (preferred) or ``.txt`` side file ``name`` of ``split``; DataError naming both if absent
    (and ``how_to_build``, ``{root}`` filled in with the split's folder)."""
    candidates = [split.root / f"{split.split}_{name}{suffix}" for suffix in SUFFIXES]
    for path in candidates:
        if path.is_file():
            return path
    hint = f"; build it with: {how_to_build.format(root=split.root)}" if how_to_build else ""
    raise DataError(f"side input {name!r} of split {split.split!r} is missing: looked for "
                    f"{' and '.join(str(p) for p in candidates)}{hint}")


def load_side_inputs(split: PrecompSplit, specs: tuple[SideInput, ...] | list[SideInput]) -> SideArrays:
    """Load every side input in ``specs`` for ``split`` (rows checked against the images or captions)."""
    loaded = SideArrays()
    for spec in specs:
        path = side_input_path(split, spec.name, spec.how_to_build)
        array = _read_array(path)
        rows = split.n_images if spec.per == "image" else split.n_captions
        source_rows = rows if split.source_images is None else (
            split.source_images * (1 if spec.per == "image" else split.caps_per_image))
        if array.ndim < 1 or array.shape[0] != source_rows:
            found = array.shape[0] if array.ndim else 0
            raise DataError(f"{path}: {found} rows, expected one per {spec.per} of split {split.split!r} "
                            f"({source_rows})")
        _check_width(array, path, split, spec)
        target = loaded.image if spec.per == "image" else loaded.caption
        target[spec.name] = array[:rows]
    return loaded


def _check_width(array: np.ndarray, path: Path, split: PrecompSplit, spec: SideInput) -> None:
    """DataError naming the file, the split, the width found and the width ``spec`` expects (and its key)."""
    if spec.width is None or (array.ndim == 2 and array.shape[1] == spec.width):
        return
    found = f"{array.shape[1]} values per row" if array.ndim == 2 else f"shape {array.shape}"
    key = f" ({spec.width_key}={spec.width})" if spec.width_key else ""
    fix = f"; set {spec.width_key} to the file's width or rebuild the file" if spec.width_key else ""
    hint = f" ({spec.how_to_build.format(root=split.root)})" if fix and spec.how_to_build else ""
    raise DataError(f"{path}: side input {spec.name!r} of split {split.split!r} has {found}, the model expects "
                    f"{spec.width}{key}{fix}{hint}")


def _read_array(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path}: cannot read as a .npy array ({exc})") from exc
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise DataError(f"{path}: expected a numeric array, found dtype {array.dtype}")
        return array
    return _read_text_rows(path)


def _read_text_rows(path: Path) -> np.ndarray:
    """Lines of whitespace-separated numbers -> (N, width) int64 if every value is an integer, else float32."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc})") from exc
    rows = [line.split() for line in lines]
    widths = {len(row) for row in rows}
    if not rows or len(widths) != 1 or 0 in widths:
        bad = next((i + 1 for i, row in enumerate(rows) if len(row) != len(rows[0]) or not row), 1)
        raise DataError(f"{path}: every line must hold the same number (>= 1) of values; line {bad} differs "
                        f"(widths found: {sorted(widths)})")
    try:
        return np.array(rows, dtype=np.int64)
    except ValueError:
        pass
    try:
        array = np.array(rows, dtype=np.float32)
    except ValueError as exc:
        raise DataError(f"{path}: not a table of numbers ({exc})") from exc
    bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if len(bad_rows):
        raise DataError(f"{path}: line {int(bad_rows[0]) + 1} has non-finite values (NaN or inf)")
    return array


def side_rows(extras: Mapping[str, torch.Tensor] | None, spec: SideInput, width: int, needs: str) -> torch.Tensor:
    """The (B, ``width``) rows of side input ``spec`` in a batch's ``extras``; DataError saying what ``needs``
    them (e.g. "CGE needs the CLIP vectors of {split}_clip.npy") and what was found otherwise."""
    rows = (extras or {}).get(spec.name)
    if rows is None or rows.dim() != 2 or rows.shape[1] != width:
        found = None if rows is None else tuple(rows.shape)
        raise DataError(f"{needs} as (B, {width}) rows; got {found}")
    return rows
