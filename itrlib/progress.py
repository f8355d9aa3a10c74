"""Progress a person can follow: live bars where someone watches, plain lines in logs and executed notebooks.

``ITRLIB_PROGRESS`` chooses the display: ``bars`` (tqdm, live), ``lines`` (one line when a long step ends, and
one every :data:`LINE_INTERVAL_S` seconds while it runs), ``off``. Unset (``auto``): bars in a terminal and
in a kernel started by JupyterLab/Notebook (which sets ``JPY_SESSION_NAME``); lines everywhere else, e.g. a
notebook executed headlessly by papermill or nbval (a widget bar there is saved as a stale ``0%|`` line) or
a command whose output goes to a log file.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

PROGRESS_ENV = "ITRLIB_PROGRESS"
MODES = ("auto", "bars", "lines", "off")
LINE_INTERVAL_S = 60.0
"""In ``lines`` mode a running step reports at most once per this many seconds (plus once when it ends)."""
MIN_REPORTED_S = 2.0
"""In ``lines`` mode a step shorter than this prints nothing (a per-epoch summary line already covers it)."""


def progress_mode() -> str:
    """``bars``, ``lines`` or ``off``: :data:`PROGRESS_ENV`, or the ``auto`` choice described above."""
    mode = os.environ.get(PROGRESS_ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{PROGRESS_ENV}={mode!r}; expected one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    if "ipykernel" in sys.modules:
        return "bars" if in_jupyterlab() else "lines"
    return "bars" if sys.stderr.isatty() else "lines"


def in_jupyterlab() -> bool:
    """Whether this is a kernel started by JupyterLab (a person is watching), not by papermill or nbval."""
    return "ipykernel" in sys.modules and bool(os.environ.get("JPY_SESSION_NAME"))


def format_seconds(seconds: float) -> str:
    """``42.0 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def say(message: str, enabled: bool = True) -> None:
    """Print one progress line (through tqdm, so a live bar below it is not broken), unless ``enabled`` is
    False or the mode is ``off``."""
    if enabled and progress_mode() != "off":
        tqdm.write(message, file=sys.stdout)
        sys.stdout.flush()


class LineProgress:
    """The part of tqdm's interface itrlib uses, reported as occasional plain lines."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, unit_scale: bool = False) -> None:
        self.iterable, self.desc, self.unit, self.unit_scale = iterable, desc, unit, unit_scale
        self.total = total if total is not None else _length(iterable)
        self.n, self.postfix = initial, ""
        self.start = self.last_report = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last_report >= LINE_INTERVAL_S:
            self.last_report = now
            say(f"{self.desc}: {self._count()} after {format_seconds(now - self.start)}{self.postfix}")

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", " + ", ".join(f"{k} {v}" for k, v in values.items()) if values else ""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        elapsed = time.monotonic() - self.start
        if elapsed >= MIN_REPORTED_S:
            say(f"{self.desc}: {self._count()} in {format_seconds(elapsed)}")

    def _count(self) -> str:
        done = _scaled(self.n) if self.unit_scale else str(self.n)
        if not self.total:
            return f"{done} {self.unit}"
        total = _scaled(self.total) if self.unit_scale else str(self.total)
        return f"{done}/{total} {self.unit} ({100 * self.n / self.total:.0f}%)"


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, desc: str = "", total: int | None = None,
                 unit: str = "it", initial: int = 0, unit_scale: bool = False) -> Any:
    """A tqdm bar, a :class:`LineProgress` or a silent tqdm, following :func:`progress_mode`.

    ``enabled=False`` (a caller's ``progress=False``) always silences it. Bars are not left behind when done.
    """
    mode = progress_mode() if enabled else "off"
    if mode == "lines":
        return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale)
    return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, unit_scale=unit_scale,
                disable=mode == "off", leave=False)


def _length(iterable: Iterable | None) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def _scaled(count: float) -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= threshold:
            return f"{count / threshold:.1f}{suffix}"
    return f"{count:g}"
