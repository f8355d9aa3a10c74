"""Notebook regression check: the smoke rSum lines the nbval-checked cells print, and their expected values.

Each notebook ends with a cell marked ``# NBVAL_CHECK_OUTPUT`` that prints :func:`smoke_summary` of its
results. ``make notebook-tests`` re-executes the notebooks under the smoke profile and nbval compares the
printed lines with the committed outputs exactly, so a change that moves a smoke rSum fails ``make test``.
``make refresh-notebook-outputs`` re-executes them and writes the checked outputs back
(:func:`refresh_outputs`); :func:`expected_from_notebook` and :func:`compare` do the check from Python.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from itrlib.errors import ItrlibError

if TYPE_CHECKING:
    import nbformat

CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
RSUM_DECIMALS = 1
"""Printed precision: float noise in the last digits never shows (smoke rSums are multiples of 0.1 anyway)."""
_LINE = re.compile(r"^(?P<method>.+) (?P<protocol>\S+) rSum (?P<rsum>-?\d+(?:\.\d+)?)$")

Key = tuple[str, str]
"""(method label, protocol)."""


def rsum_by_method(results_by_method: Mapping[object, Mapping[str, dict]]) -> dict[Key, float]:
    """``{(method, protocol): rSum}`` of ``{method: {protocol: eval result}}``, rounded as printed."""
    return {(str(method), protocol): round(result["metrics"]["rsum"], RSUM_DECIMALS)
            for method, by_protocol in results_by_method.items() for protocol, result in by_protocol.items()}


def smoke_summary(results_by_method: Mapping[object, Mapping[str, dict]]) -> str:
    """One line per method and protocol, e.g. ``VSE∞ f30k1k rSum 231.5`` (what the checked cells print)."""
    return "\n".join(f"{method} {protocol} rSum {rsum:.{RSUM_DECIMALS}f}"
                     for (method, protocol), rsum in rsum_by_method(results_by_method).items())


LOSS_DIGITS = 4
"""Significant digits of :func:`loss_summary`: run-to-run float noise (~1e-6 relative) never shows."""


def last_epoch_loss(run_dir: str | Path) -> float:
    """Mean training loss over the logged steps of a run's last epoch (``metrics.jsonl``)."""
    from itrlib.io import read_jsonl

    steps = [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if r.get("event") == "step"]
    if not steps:
        raise ItrlibError(f"{run_dir}: no training steps logged in metrics.jsonl")
    last = max(r["epoch"] for r in steps)
    losses = [r["loss"] for r in steps if r["epoch"] == last]
    return sum(losses) / len(losses)


def loss_summary(results_by_method: Mapping[object, Mapping[str, dict]]) -> str:
    """One line per method, e.g. ``USER (SGE) last-epoch loss -7.329``, read from each result's run folder.

    For models that stay near chance under the smoke budget (USER: its UTO loss pulls every pair into the
    band below the margin first, docs/PAPER_DIFFERENCES.md section 3): their scores are near-ties, so the
    smoke rSum moves with last-bit float differences between processes (seen: 63.5 and 64.0 for one run in
    two clones), while the training loss agrees to about 1e-6 and still moves with any change to the model,
    the loss or the data.
    """
    return "\n".join(f"{method} last-epoch loss "
                     f"{last_epoch_loss(next(iter(by_protocol.values()))['run']):.{LOSS_DIGITS}g}"
                     for method, by_protocol in results_by_method.items())


def parse_summary(text: str) -> dict[Key, float]:
    """The ``{(method, protocol): rSum}`` of the summary lines in ``text`` (other lines are ignored)."""
    matches = (_LINE.match(line) for line in text.splitlines())
    return {(m["method"], m["protocol"]): float(m["rsum"]) for m in matches if m}


def _read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """``nbformat.read`` as version 4, imported here: importing nbformat takes about 1.5 s (jsonschema's
    format checkers), and every notebook imports this module for :func:`smoke_summary` alone."""
    import nbformat

    return nbformat.read(path, as_version=4)


def is_checked(cell: nbformat.NotebookNode) -> bool:
    """Whether nbval compares this cell's outputs (a code cell marked ``# NBVAL_CHECK_OUTPUT``)."""
    return cell.cell_type == "code" and CHECK_MARKER in cell.source


def expected_from_notebook(path: str | Path) -> dict[Key, float]:
    """The rSums committed in the stdout of the notebook's checked cells: ``{(method, protocol): rSum}``."""
    notebook = _read_notebook(path)
    text = "".join(output.get("text", "") for cell in notebook.cells if is_checked(cell)
                   for output in cell.outputs if output.output_type == "stream" and output.name == "stdout")
    return parse_summary(text)


def compare(measured: Mapping[Key, float], expected: Mapping[Key, float], tolerance: float = 0.0) -> list[str]:
    """One line per difference larger than ``tolerance`` (or a value on one side only); ``[]`` if none."""
    differences = []
    for key in [*expected, *(key for key in measured if key not in expected)]:
        label = " ".join(key)
        if key not in measured:
            differences.append(f"{label}: not measured (expected rSum {expected[key]:.1f})")
        elif key not in expected:
            differences.append(f"{label}: rSum {measured[key]:.1f} has no expected value")
        elif abs(measured[key] - expected[key]) > tolerance:
            differences.append(f"{label}: rSum {measured[key]:.1f}, expected {expected[key]:.1f} "
                               f"({measured[key] - expected[key]:+.1f})")
    return differences


def refresh_outputs(executed: str | Path, committed: str | Path) -> None:
    """Write the outputs and execution counts of the checked cells of ``executed`` (a papermill run of
    ``committed``) into ``committed``; nbval needs both. Cells are matched by id, so papermill's
    injected-parameters cell and metadata stay out; every other cell keeps no output and no count."""
    import nbformat

    run = {cell.id: cell for cell in _read_notebook(executed).cells}
    notebook = _read_notebook(committed)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        source = run.get(cell.id)
        if source is None or source.source != cell.source:
            raise ItrlibError(f"{executed} is not an execution of {committed}: cell {cell.id} differs")
        checked = is_checked(cell)
        cell.outputs = source.outputs if checked else []
        cell.execution_count = source.execution_count if checked else None
    nbformat.write(notebook, committed)


def prepare_notebooks(out_dir: str | Path, profile: str = "smoke") -> list[Path]:
    """Every project notebook, in run order, with papermill's parameters cell for ``profile`` injected and
    nothing executed, as ``out_dir/<flat name>`` (what nbval then executes); one process for all of them."""
    import papermill

    from itrlib.notebook import find_project_root
    from itrlib.notebook_runner import executed_name, project_notebooks

    root, out_dir = find_project_root(), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for notebook in project_notebooks(root):
        target = out_dir / executed_name(notebook)
        papermill.execute_notebook(str(root / notebook), str(target), parameters={"profile": profile},
                                   prepare_only=True, progress_bar=False)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m itrlib.regression refresh-outputs EXECUTED COMMITTED`` and ``prepare OUT_DIR`` (used by the
    Makefile)."""
    parser = argparse.ArgumentParser(prog="python -m itrlib.regression", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    refresh = commands.add_parser("refresh-outputs", help="copy the checked cells' outputs of an executed notebook")
    refresh.add_argument("executed", type=Path)
    refresh.add_argument("committed", type=Path)
    prepare = commands.add_parser("prepare", help="write every notebook with the profile's parameters injected")
    prepare.add_argument("out_dir", type=Path)
    prepare.add_argument("--profile", default="smoke", help="parameter injected into every notebook (default: smoke)")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        written = prepare_notebooks(args.out_dir, args.profile)
        print(f"{len(written)} notebooks prepared in {args.out_dir} (profile={args.profile})")
        return 0
    refresh_outputs(args.executed, args.committed)
    print(f"{args.committed}: checked outputs refreshed from {args.executed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
