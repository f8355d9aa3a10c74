"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A reader never sees a half-written result, and a run killed mid-write leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

_UMASK = os.umask(0)
os.umask(_UMASK)
TEMP_SUFFIX = ".tmp"
"""Temporary files of :func:`atomic_open` are named ``.{target name}.{random}.tmp`` beside the target."""


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary handle whose content replaces ``path`` only when the block exits without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_files(folder: str | os.PathLike) -> dict[Path, str]:
    """Temporary files of :func:`atomic_open` in ``folder`` -> the name of the file each was to replace."""
    found = {}
    for path in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        target = path.name[1: -len(TEMP_SUFFIX)].rpartition(".")[0]
        if target and path.is_file():
            found[path] = target
    return found


def default_permissions(path: str | os.PathLike) -> None:
    """Give a ``mkstemp`` file (created 0600) the permissions of an ordinary new file (0666 & ~umask)."""
    os.chmod(path, 0o666 & ~_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save(path: str | os.PathLike, writer: Callable[[BinaryIO], None]) -> None:
    """Atomically write ``path`` with ``writer(handle)``, e.g. ``lambda f: torch.save(obj, f)``."""
    with atomic_open(path) as handle:
        writer(handle)


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and fsync it (a line is either fully present or absent after a crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True, default=_json_default) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file, ignoring a torn last line left by a crash."""
    records = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise
    return records


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
