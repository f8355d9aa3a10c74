"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A reader never sees a half-written result, and a run killed mid-write leaves the previous file intact. A write
that the system refuses (no permission, disk full, file too large) raises :class:`WriteError` naming the file,
what it was to hold and the OS error, and leaves the previous file and no temporary file behind.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

from itrlib.errors import ItrlibError

TEMP_SUFFIX = ".tmp"
"""Temporary files of :func:`atomic_open` are named ``.{target name}.{random}.tmp`` beside the target."""


class WriteError(ItrlibError, OSError):
    """A file could not be written; the message names it, what it was to hold and the OS error (``errno`` kept)."""


def _write_error(path: Path, what: str, reason: str, code: int | None, replaces: bool = True) -> WriteError:
    """``cannot write {what} to {path}: {reason}``; ``replaces``: the write replaces ``path`` as a whole, so a
    previous file there is unchanged (and the message says so)."""
    kept = f"; the previous {path.name} is unchanged" if replaces and path.is_file() else ""
    error = WriteError(f"cannot write {what + ' to ' if what else ''}{path}: {reason}{kept}")
    error.errno = code
    return error


def _os_write_error(path: Path, what: str, exc: OSError, replaces: bool = True) -> WriteError:
    """:func:`_write_error` for ``exc``: its message and errno name, or the file that stands where a folder
    of ``path`` should be."""
    existing = _nearest_existing(path.parent)
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and existing.is_file():
        reason = f"{existing} is a file, not a folder"
    else:
        name = errno.errorcode.get(exc.errno or 0)
        reason = f"{exc.strerror} ({name})" if exc.strerror and name else str(exc)
    return _write_error(path, what, reason, exc.errno, replaces)


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


@contextmanager
def _reported(path: Path, what: str, replaces: bool = True) -> Iterator[None]:
    """Turn an OSError of the block into a :class:`WriteError` about ``path``."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise _os_write_error(path, what, exc, replaces) from exc


class _RecordingWriter:
    """A binary file that remembers the first OSError of its ``write``/``flush``: writers such as ``torch.save``
    replace it by their own error, which does not say why the write failed."""

    def __init__(self, file: BinaryIO):
        self._file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._file.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self._file.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


@contextmanager
def atomic_open(path: str | os.PathLike, what: str = "") -> Iterator[BinaryIO]:
    """Open a binary handle whose content replaces ``path`` only when the block exits without error.

    ``what`` says what the file holds, for the :class:`WriteError` raised when the system refuses the write
    (an OSError of the writes to the handle, however the writer reports it, or of the block itself).
    """
    path = Path(path)
    with _reported(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    file = os.fdopen(fd, "wb")
    handle = _RecordingWriter(file)
    try:
        try:
            yield handle
        except ItrlibError:
            raise
        except BaseException as exc:
            failure = handle.error or (exc if isinstance(exc, OSError) else None)
            if failure is None:
                raise
            raise _os_write_error(path, what, failure) from exc
        with _reported(path, what):
            file.flush()
            os.fsync(file.fileno())
            file.close()
            default_permissions(tmp)
            os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            file.close()  # closes the descriptor even when flushing what is left fails
        with suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: str | os.PathLike, what: str = "") -> None:
    """Raise :class:`WriteError` at once when ``path`` cannot be written: it is a folder, or its nearest existing
    ancestor is not a writable folder (call before a long computation; nothing is created)."""
    path = Path(path)
    if path.is_dir():
        raise _write_error(path, what, "it is a folder; give a file name", errno.EISDIR)
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise _write_error(path, what, f"{folder} is a file, not a folder", errno.ENOTDIR)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _write_error(path, what, f"the folder {folder} is not writable", errno.EACCES)


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
    os.chmod(path, 0o666 & ~current_umask())


def current_umask() -> int:
    """The process's umask: read from ``/proc/self/status`` where the system shows it (Linux), which leaves it
    untouched; elsewhere set and restored at once."""
    with suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, what: str = "") -> None:
    with atomic_open(path, what) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, what: str = "") -> None:
    atomic_write_bytes(path, text.encode("utf-8"), what)


def atomic_write_json(path: str | os.PathLike, obj: Any, what: str = "") -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n", what)


def atomic_save(path: str | os.PathLike, writer: Callable[[BinaryIO], None], what: str = "") -> None:
    """Atomically write ``path`` with ``writer(handle)``, e.g. ``lambda f: torch.save(obj, f)``."""
    with atomic_open(path, what) as handle:
        writer(handle)


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and fsync it (a line is either fully present or absent after a crash)."""
    path = Path(path)
    with _reported(path, "", replaces=False):
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
