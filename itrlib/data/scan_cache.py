"""A full NaN/inf scan of a split's features, done once per version of the file.

Training scans every image of ``{split}_ims.npy`` before the first step, so a bad image is refused even
when the sampler would never draw it. The verdict (clean, or the error naming the file and the image) is
cached under the file's absolute path with its size and ``mtime_ns`` in
``$ITRLIB_CACHE_DIR/feature_scans.json`` (default ``~/.cache/itrlib``), never in the data folder, which may
be read-only. A changed file is scanned again; a missing, corrupt or unwritable cache only costs a rescan.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from itrlib.data.precomp import FULL_CHECK_CHUNK, PrecompSplit, check_finite
from itrlib.errors import DataError
from itrlib.io import atomic_write_json
from itrlib.progress import progress_bar

CACHE_ENV = "ITRLIB_CACHE_DIR"
CACHE_FILE = "feature_scans.json"


def cache_path() -> Path:
    folder = os.environ.get(CACHE_ENV) or "~/.cache/itrlib"
    return Path(folder).expanduser() / CACHE_FILE


def check_split_features(split: PrecompSplit, progress: bool = False) -> None:
    """Raise DataError if any image in the features file of ``split`` (all of it, even past a
    ``max_images`` cut) holds NaN or inf; scan only when the file changed since its last scan."""
    path = split.images_path.resolve()
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    scans = _read_cache()
    entry = scans.get(str(path))
    if not (isinstance(entry, dict) and all(entry.get(key) == value for key, value in stamp.items())):
        entry = {**stamp, "error": _scan(path, progress)}
        scans[str(path)] = entry
        _write_cache(scans)
    if entry.get("error"):
        raise DataError(str(entry["error"]))


def _scan(path: Path, progress: bool) -> str | None:
    """The DataError message of the first non-finite image, or None when every feature is finite."""
    images = np.load(path, mmap_mode="r")
    starts = range(0, int(images.shape[0]), FULL_CHECK_CHUNK)
    try:
        for start in progress_bar(starts, desc=f"scanning {path.name} for NaN/inf", unit="chunks",
                                  enabled=progress):
            check_finite(images, slice(start, start + FULL_CHECK_CHUNK), path)
    except DataError as exc:
        return str(exc)
    return None


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(scans: dict) -> None:
    path = cache_path()
    kept = {name: entry for name, entry in scans.items() if Path(name).exists()}
    try:
        atomic_write_json(path, kept)
    except OSError as exc:
        warnings.warn(f"cannot write the feature scan cache {path} ({exc}): features will be scanned again "
                      f"next time; set {CACHE_ENV} to a writable folder", RuntimeWarning, stacklevel=3)
