"""Execute the suite's notebooks headlessly with papermill, one profile at a time, timing each.

Used by ``make notebooks`` / ``make reproduce-tables`` and ``python -m itrlib.suite notebooks``. Every notebook
gets the same parameters (``profile``, and when given ``data_root``, ``bert_path``, ``overrides``); the
executed copies go to the profile's ``notebooks/`` folder beside its runs, tables and figures, with
``timings.json`` (start, end and seconds of each notebook). The log holds only what the cells print:
progress as plain lines (``ITRLIB_PROGRESS=lines`` unless set), no kernel chatter.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from itrlib.errors import ConfigError, ItrlibError
from itrlib.io import atomic_write_json
from itrlib.progress import PROGRESS_ENV, format_seconds
from itrlib.suite.notebook import check_notebook_inputs, find_project_root
from itrlib.suite.profiles import get_profile
from itrlib.suite.report.run_times import run_time_frame, run_time_table
from itrlib.suite.report.tables import markdown_table

NOTEBOOK_DIR = "notebooks"
TIMINGS_FILE = "timings.json"
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]
"""Kernel arguments: no start-up warnings (e.g. about its local TCP sockets) in the log."""


@dataclass(frozen=True)
class NotebookTiming:
    notebook: str
    """Path relative to the project root, e.g. ``notebooks/afa/02_ablation.ipynb``."""
    executed: str
    """The executed copy."""
    started: str
    """Local start time, ISO format."""
    seconds: float
    ok: bool


FOLDER_ORDER = ("afa", "user", "mvsen", "leaderboard")
"""Notebook folders in run order: the papers' (MVSEN last, since its notebooks compare with and reuse the runs of
the others), then the leaderboard, whose seed-0 runs are theirs."""


def run_order(notebook: Path) -> tuple[int, str]:
    """Sort key: top-level notebooks (``00_vse``) first, then each folder in :data:`FOLDER_ORDER`
    (folders not listed after them), sorted paths within a folder."""
    parts = notebook.parts
    folder = parts[-2] if len(parts) > 2 else ""
    rank = 0 if not folder else 1 + (FOLDER_ORDER.index(folder) if folder in FOLDER_ORDER else len(FOLDER_ORDER))
    return rank, str(notebook)


def project_notebooks(root: str | Path | None = None) -> list[Path]:
    """Every notebook under ``notebooks/`` in run order (:func:`run_order`: ``00_vse`` first), relative."""
    root = Path(root or find_project_root())
    found = sorted((p.relative_to(root) for p in (root / NOTEBOOK_DIR).rglob("*.ipynb")
                    if ".ipynb_checkpoints" not in p.parts), key=run_order)
    if not found:
        raise ItrlibError(f"no notebooks under {root / NOTEBOOK_DIR}")
    return found


def executed_name(notebook: str | Path) -> str:
    """``notebooks/afa/01_train_eval.ipynb`` -> ``afa__01_train_eval.ipynb`` (one flat folder)."""
    parts = Path(notebook).parts
    return "__".join(parts[1:] if parts and parts[0] == NOTEBOOK_DIR else parts)


def notebook_parameters(profile: str, *, data_root: str | None = None, bert_path: str | None = None,
                        overrides: Sequence[str] = (), root: str | Path | None = None) -> dict:
    """The papermill parameters every notebook takes; unset ones keep the notebook's default. Bad ones fail here,
    before any kernel starts (:func:`~itrlib.suite.notebook.check_notebook_inputs`; a relative ``data_root`` is read
    from ``root``, the project root the notebooks run in)."""
    check_notebook_inputs(profile, data_root=data_root, bert_path=bert_path, overrides=list(overrides),
                          root=Path(root or find_project_root()))
    params: dict = {"profile": profile}
    if data_root:
        params["data_root"] = str(data_root)
    if bert_path:
        params["bert_path"] = str(bert_path)
    if overrides:
        params["overrides"] = list(overrides)
    return params


def select_notebooks(notebooks: Sequence[Path], only: Sequence[str]) -> list[Path]:
    """The notebooks whose path contains one of ``only`` (all when empty); a key that matches none is an error."""
    unmatched = [key for key in only if not any(key in str(nb) for nb in notebooks)]
    if unmatched:
        raise ItrlibError(f"--only {', '.join(map(repr, unmatched))}: no notebook path contains it; notebooks: "
                          f"{', '.join(map(str, notebooks))}")
    return [nb for nb in notebooks if not only or any(key in str(nb) for key in only)]


def run_notebooks(profile: str, *, data_root: str | None = None, bert_path: str | None = None,
                  overrides: Sequence[str] = (), only: Sequence[str] = (), root: str | Path | None = None
                  ) -> list[NotebookTiming]:
    """Execute the project's notebooks (or those whose path contains one of ``only``) under ``profile``.

    Prints a start and an end line per notebook, and at the end a timing table per notebook and one per run
    (:func:`~itrlib.suite.report.run_times.run_time_frame`); stops at the first failure
    (the partly executed copy is kept and named in the error). Returns the timings, also written to
    ``<profile output>/notebooks/timings.json``.
    """
    import papermill

    root = Path(root or find_project_root())
    loose = [item for item in overrides if "=" not in item]
    if loose:
        raise ConfigError(f"override {loose[0]!r} is not of the form section.key=value (several notebooks: repeat "
                          "--only or separate its values with commas, e.g. --only afa/02,user/03)")
    params = notebook_parameters(profile, data_root=data_root, bert_path=bert_path, overrides=overrides, root=root)
    notebooks = select_notebooks(project_notebooks(root), only)
    out_dir = root / get_profile(profile).notebooks_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(PROGRESS_ENV, "lines")  # inherited by the kernels
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    timings: list[NotebookTiming] = []
    for index, notebook in enumerate(notebooks, 1):
        executed = out_dir / executed_name(notebook)
        started, clock = datetime.now().isoformat(timespec="seconds"), time.monotonic()
        print(f"[{index}/{len(notebooks)}] {notebook} ({shown}) started {started}", flush=True)
        ok = False
        try:
            papermill.execute_notebook(str(root / notebook), str(executed), parameters=params, cwd=str(root),
                                       log_output=False, stdout_file=sys.stdout, stderr_file=sys.stderr,
                                       progress_bar=False, extra_arguments=QUIET_KERNEL)
            ok = True
        finally:
            seconds = time.monotonic() - clock
            timings.append(NotebookTiming(str(notebook), str(executed.relative_to(root)), started, seconds, ok))
            _write_timings(out_dir / TIMINGS_FILE, profile, params, timings)
            verdict = "done" if ok else "FAILED (partly executed copy kept)"
            print(f"[{index}/{len(notebooks)}] {notebook} {verdict} in {format_seconds(seconds)} -> "
                  f"{executed.relative_to(root)}", flush=True)
    print(timing_table(timings), flush=True)
    runs = run_time_frame(root / get_profile(profile).runs_dir)
    if not runs.empty:
        print(f"\nTime per run ({len(runs)} runs; training and test evaluation, as each run recorded them):\n"
              f"{markdown_table(run_time_table(runs))}", flush=True)
    return timings


def timing_table(timings: Sequence[NotebookTiming]) -> str:
    """A Markdown table of wall times per notebook and the total."""
    lines = ["| notebook | wall time |", "|---|---|"]
    lines += [f"| {t.notebook}{'' if t.ok else ' (failed)'} | {format_seconds(t.seconds)} |" for t in timings]
    lines.append(f"| total | {format_seconds(sum(t.seconds for t in timings))} |")
    return "\n".join(lines)


def _write_timings(path: Path, profile: str, params: dict, timings: Sequence[NotebookTiming]) -> None:
    atomic_write_json(path, {"profile": profile, "parameters": params,
                             "total_seconds": sum(t.seconds for t in timings),
                             "notebooks": [asdict(t) for t in timings]})
