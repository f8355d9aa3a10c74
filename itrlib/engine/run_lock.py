"""One process per run folder: an exclusive ``flock`` on ``<run>/train.lock``, which names its holder.

The kernel releases a ``flock`` when its holder exits, however it exits (crash, ``kill -9``), so the lock
itself is never stale; the file may be. The file records the holder's PID, host and start time for the
error message of a second process. A file left behind by a holder that died without releasing is taken
over with a warning. A clean release deletes the file (and the run folder, if the lock created it and
nothing else was written there).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import TextIO

from itrlib.errors import ItrlibError
from itrlib.io import WriteError, check_writable

LOCK_FILE = "train.lock"


class RunLock:
    """Exclusive lock on a run folder; ``acquire`` fails at once (ItrlibError) while another holds it."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._handle: TextIO | None = None
        self._created_folder = False

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> RunLock:
        if self.held:
            return self
        check_writable(self.path, "the run's lock file")  # nothing created when the folder cannot be
        self._created_folder = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = self._lock_file()  # ItrlibError when another process holds it
        except OSError as exc:
            if self._created_folder:
                with contextlib.suppress(OSError):
                    self.folder.rmdir()
            raise WriteError(f"cannot write the run's lock file {self.path}: {exc.strerror or exc}") from exc
        previous = _read_holder(handle)
        if previous:
            warnings.warn(f"took over the stale lock {self.path} of {_describe(previous)}: that process ended "
                          "without releasing it", RuntimeWarning, stacklevel=2)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
        self._handle = handle
        return self

    def release(self) -> None:
        """Delete the lock file, then unlock; idempotent."""
        if self._handle is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a waiter that opened this file retries
        self._handle.close()
        self._handle = None
        if self._created_folder:
            try:
                self.folder.rmdir()  # only succeeds when nothing was written
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()

    def _lock_file(self) -> TextIO:
        """Open and ``flock`` the lock file, retrying when its holder deleted it between our open and lock."""
        while True:
            handle = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(handle)
                handle.close()
                raise ItrlibError(f"{self.folder} is in use by another training ({_describe(holder)}, lock file "
                                  f"{self.path}); wait for it to finish, stop it, or choose another name=") from None
            try:
                same = os.path.samestat(os.fstat(handle.fileno()), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                return handle
            handle.close()


def _read_holder(handle: TextIO) -> dict:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        return {"pid": "unknown"}
    return holder if isinstance(holder, dict) else {"pid": "unknown"}


def _describe(holder: dict) -> str:
    if not holder:
        return "a process that is still starting"
    pid = holder.get("pid", "unknown")
    this = " (this process)" if pid == os.getpid() and holder.get("host") == socket.gethostname() else ""
    return f"PID {pid}{this} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
