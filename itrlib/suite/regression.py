"""Notebook regression check: the smoke values the notebooks measure, their expected values and tolerances.

Each notebook ends with two cells. A cell marked ``# REGRESSION_MEASURED`` prints the measured smoke values
(:func:`smoke_summary`, :func:`loss_summary`): ``<name> <value>`` lines such as ``VSE∞ f30k1k rSum 321.0``.
The last cell, marked ``# NBVAL_CHECK_OUTPUT``, prints :func:`check_summary` of them: one verdict per value,
``VSE∞ f30k1k rSum within ±4.0 of 321.0: ok``, against ``notebooks/regression/expected.csv``. ``make
notebook-tests`` re-executes the notebooks under the smoke profile and nbval compares the verdict lines
exactly, so a value outside its tolerance fails ``make test`` on any machine, while float noise within the
tolerance passes.

The tolerances come from measurement (:func:`tolerances`): the smoke notebooks are run under several float
environments of a machine (:data:`FLOAT_ENVIRONMENTS`: torch's kernel dispatch, thread count, numpy's
dispatch), and each value's tolerance is :data:`TOLERANCE_MARGIN` times its largest deviation from the
reference (the ``native`` environment of the first machine measured), at least its kind's floor
(:data:`KINDS`). ``python -m itrlib.suite.regression measure-spread`` (``make measure-tolerances``) does all of it
on the machine it runs on: its values replace that machine's rows of ``measured.csv`` (other machines' rows
are kept, so the tolerances cover every CPU measured), then ``expected.csv``, its ``README.md`` (the spread
per value, machine and environment) and the verdict lines of the committed notebooks are rewritten. ``make
refresh-notebook-outputs`` re-executes the notebooks, writes the new expected values (tolerances kept) and the
checked outputs (:func:`refresh_outputs`).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from itrlib.data.synth import CAPTIONS_PER_IMAGE
from itrlib.data.synth_sizes import SIZES
from itrlib.errors import ItrlibError
from itrlib.evaluation.protocols import PROTOCOLS
from itrlib.io import atomic_write_text, read_jsonl
from itrlib.suite.notebook import find_project_root
from itrlib.suite.notebook_runner import executed_name, project_notebooks

if TYPE_CHECKING:
    import nbformat

REGRESSION_PROFILE = "smoke"
"""The profile whose notebook values are checked against ``expected.csv`` (under any other, nothing is)."""
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
MEASURED_MARKER = "# REGRESSION_MEASURED"
EXPECTED_FILE = Path("notebooks/regression/expected.csv")
"""Expected smoke values and tolerances, relative to the project root (one row per checked value)."""
MEASURED_FILE = EXPECTED_FILE.with_name("measured.csv")
"""Every measured smoke value: one row per machine, float environment and value (what the tolerances are from)."""
RSUM_DECIMALS = 1
"""Printed precision of an rSum (smoke rSums are multiples of 0.1 anyway)."""
LOSS_DIGITS = 4
"""Significant digits of a printed training loss."""


@dataclass(frozen=True)
class Kind:
    """A kind of checked value: the name's ending, how values print, and the smallest tolerance."""

    suffix: str
    value_format: str
    tolerance_floor: float
    """Smallest tolerance: an rSum moves in steps of 100 / (test images) per flipped i2t query (2.5 among the
    smoke profile's 40 f30k1k test images, 2.0 on coco1k's folds of 10), a loss in its 4th significant digit."""


FIRST_STEPS = 2
"""Training steps averaged by a ``first-steps loss``: the loss at initialisation and after one update."""
FIRST_STEPS_DIGITS = 7
"""Significant digits of a printed first-steps loss (it agrees to about 1e-5 relative across float environments)."""
FIRST_STEPS_FLOOR = 0.02
"""Smallest tolerance of a first-steps loss: 5e-5 of the ~400 of MVSEN's smoke runs; the deviations measured
across float environments were at most 0.0025 but one (0.012), so the floor is a margin for other CPUs' kernels
(measured on one machine so far), while a change to the model moves the loss far more (GCN layers 1 instead of 3:
0.56; the ranking task alone instead of all three: 4.3)."""
KINDS = (Kind(" rSum", f".{RSUM_DECIMALS}f", 2.5), Kind(" last-epoch loss", f".{LOSS_DIGITS}g", 0.002),
         Kind(" first-steps loss", f".{FIRST_STEPS_DIGITS}g", FIRST_STEPS_FLOOR))
TOLERANCE_MARGIN = 2.0
"""Tolerance = this factor times the largest deviation of a value from the reference environment."""
FLOAT_ENVIRONMENTS: dict[str, dict[str, str]] = {
    "native": {},
    "aten-default-1-thread": {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"},
    "aten-avx2-1-thread": {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"},
    "aten-default-numpy-baseline": {"ATEN_CPU_CAPABILITY": "default",
                                    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"},
}
"""Float environments of one machine whose spread sets the tolerances; ``native`` is the machine's defaults.
AVX-512 rows are added where the CPU has it (:func:`float_environments`)."""
AVX512_ENVIRONMENT = {"aten-avx512-1-thread": {"ATEN_CPU_CAPABILITY": "avx512", "OMP_NUM_THREADS": "1"}}
_SUFFIXES = "|".join(re.escape(kind.suffix) for kind in KINDS)
_QUANTITY = re.compile(rf"^(?P<name>.+(?:{_SUFFIXES})) (?P<value>-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)$")
_VERDICT = re.compile(rf"^(?P<name>.+(?:{_SUFFIXES}))(?: within ±\S+ of \S+: |: no expected value |: not checked: ).*$")


def _kind(name: str) -> Kind:
    kind = next((kind for kind in KINDS if name.endswith(kind.suffix)), None)
    if kind is None:
        raise ItrlibError(f"checked value {name!r}: its name must end with one of "
                          f"{[kind.suffix.strip() for kind in KINDS]}")
    return kind


def format_value(name: str, value: float) -> str:
    """``value`` as printed for a checked value called ``name`` (rSum one decimal, loss 4 digits)."""
    return f"{value:{_kind(name).value_format}}"


def quantity_lines(values: Mapping[str, float]) -> str:
    """``<name> <value>`` lines, e.g. ``VSE∞ f30k1k rSum 321.0`` (what the measured cells print)."""
    return "\n".join(f"{name} {format_value(name, value)}" for name, value in values.items())


def parse_quantities(text: str) -> dict[str, float]:
    """``{name: value}`` of the ``<name> <value>`` lines in ``text`` (other lines are ignored)."""
    matches = (_QUANTITY.match(line) for line in text.splitlines())
    return {m["name"]: float(m["value"]) for m in matches if m}


def rsum_values(results_by_method: Mapping[object, Mapping[str, dict]]) -> dict[str, float]:
    """``{"<method> <protocol> rSum": rSum}`` of ``{method: {protocol: eval result}}``, rounded as printed."""
    return {f"{method} {protocol} rSum": round(result["metrics"]["rsum"], RSUM_DECIMALS)
            for method, by_protocol in results_by_method.items() for protocol, result in by_protocol.items()}


def smoke_summary(results_by_method: Mapping[object, Mapping[str, dict]]) -> str:
    """One line per method and protocol, e.g. ``VSE∞ f30k1k rSum 231.5``."""
    return quantity_lines(rsum_values(results_by_method))


def last_epoch_loss(run_dir: str | Path) -> float:
    """Mean training loss over the logged steps of a run's last epoch (``metrics.jsonl``)."""
    steps = [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if r.get("event") == "step"]
    if not steps:
        raise ItrlibError(f"{run_dir}: no training steps logged in metrics.jsonl")
    last = max(r["epoch"] for r in steps)
    losses = [r["loss"] for r in steps if r["epoch"] == last]
    return sum(losses) / len(losses)


def loss_values(results_by_method: Mapping[object, Mapping[str, dict]]) -> dict[str, float]:
    """``{"<method> last-epoch loss": loss}``, read from the run folder of each method's results."""
    return {f"{method} last-epoch loss": _rounded_loss(last_epoch_loss(by_protocol_run(by_protocol)))
            for method, by_protocol in results_by_method.items()}


def _rounded_loss(loss: float) -> float:
    return float(f"{loss:.{LOSS_DIGITS}g}")


def loss_summary(results_by_method: Mapping[object, Mapping[str, dict]]) -> str:
    """One line per method, e.g. ``USER (SGE) last-epoch loss -7.329``.

    For models that stay near chance under the smoke budget (USER: its UTO loss pulls every pair into the
    band below the margin first, docs/PAPER_DIFFERENCES.md section 3): their scores are near-ties, so their
    smoke rSum moves by whole queries between float environments, while the training loss agrees closely and
    still moves with any change to the model, the loss or the data.
    """
    return quantity_lines(loss_values(results_by_method))


def first_steps_loss(run_dir: str | Path, steps: int = FIRST_STEPS) -> float:
    """Mean training loss of a run's first ``steps`` steps (``metrics.jsonl``; the run must log every step)."""
    logged = {r["step"]: r["loss"] for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if r.get("event") == "step"}
    missing = [step for step in range(1, steps + 1) if step not in logged]
    if missing:
        raise ItrlibError(f"{run_dir}: metrics.jsonl lacks the loss of training steps {missing} "
                          "(a first-steps loss needs train.log_every=1)")
    return sum(logged[step] for step in range(1, steps + 1)) / steps


def is_composite(by_protocol: Mapping[str, dict]) -> bool:
    """Whether a method's results come from a composite (a score combination of trained runs, no training)."""
    return next(iter(by_protocol.values())).get("model") == "composite"


def first_steps_summary(results_by_method: Mapping[object, Mapping[str, dict]], profile: str) -> str:
    """One line per trained run among the methods, e.g. ``MVSEN t2i first-steps loss 396.1003`` (composites
    have no training loss and are left out). Under a profile other than :data:`REGRESSION_PROFILE` (whose
    presets log every step), one line saying so: the other profiles log every ``train.log_every`` steps, and
    nothing checks these values there.

    For models whose smoke training is chaotic (MVSEN: for about a dozen steps every pair scores alike, the
    loss sits at its all-violating plateau, and a difference in the last bit grows about 30-fold per step, in
    float64 as in float32), so that their smoke rSum spreads over tens of points between float environments:
    the loss of the first steps is still a function of the model, the loss, the data and one optimiser step,
    and agrees to about 1e-5 relative across float environments.
    """
    if profile != REGRESSION_PROFILE:
        return f"first-steps losses: {REGRESSION_PROFILE} profile only (this run: {profile})"
    return quantity_lines({f"{method} first-steps loss": first_steps_loss(by_protocol_run(by_protocol))
                           for method, by_protocol in results_by_method.items() if not is_composite(by_protocol)})


def by_protocol_run(by_protocol: Mapping[str, dict]) -> str:
    """The run folder of a method's results (every protocol's result names the same run)."""
    return next(iter(by_protocol.values()))["run"]


CHAOTIC_SMOKE = ("the smoke training is chaotic: these rSums spread over tens of points between float "
                 "environments; the trained runs' first-steps losses are checked instead")
"""Why :func:`shown_summary` shows MVSEN's smoke rSums without checking them."""


def shown_summary(results_by_method: Mapping[object, Mapping[str, dict]], why: str) -> str:
    """The rSums of :func:`smoke_summary` as ``<name> = <value>`` lines under a header saying why they are not
    checked (they do not parse as checked values)."""
    lines = (f"{name} = {format_value(name, value)}" for name, value in rsum_values(results_by_method).items())
    return "\n".join([f"shown, not checked ({why}):", *lines])


@dataclass(frozen=True)
class Expected:
    """One checked value: its expected value, tolerance, and the range measured across float environments."""

    value: float
    tolerance: float
    low: float | None = None
    high: float | None = None
    environments: int = 0
    """Float environments measured (0: the tolerance is the kind's floor, not measured yet)."""

    def holds(self, measured: float) -> bool:
        # a hair of slack: both sides are printed decimals, and 321.0 - 319.0 need not be exactly 2.0
        return math.isfinite(measured) and abs(measured - self.value) <= self.tolerance * (1 + 1e-9)


_COLUMNS = ("quantity", "expected", "tolerance", "low", "high", "environments")


def expected_path(root: str | Path | None = None) -> Path:
    """``notebooks/regression/expected.csv`` of the project at ``root`` (default: the project root)."""
    return Path(root or find_project_root()) / EXPECTED_FILE


def read_expected(path: str | Path | None = None) -> dict[str, Expected]:
    """``{name: Expected}`` from the expected-values file (default: the project's)."""
    path = Path(path) if path else expected_path()
    if not path.is_file():
        raise ItrlibError(f"{path}: no expected smoke values (make measure-tolerances writes them)")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and set(rows[0]) != set(_COLUMNS):
        raise ItrlibError(f"{path}: columns {sorted(rows[0])}, expected {list(_COLUMNS)}")
    return {row["quantity"]: Expected(float(row["expected"]), float(row["tolerance"]),
                                      float(row["low"]) if row["low"] else None,
                                      float(row["high"]) if row["high"] else None, int(row["environments"]))
            for row in rows}


def write_expected(expected: Mapping[str, Expected], path: str | Path | None = None) -> Path:
    """Write ``expected`` (sorted by name) as the expected-values CSV, atomically."""
    path = Path(path) if path else expected_path()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for name in sorted(expected):
        e = expected[name]
        writer.writerow([name, format_value(name, e.value), f"{e.tolerance:.6g}",
                         "" if e.low is None else format_value(name, e.low),
                         "" if e.high is None else format_value(name, e.high), e.environments])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buffer.getvalue())
    return path


def smoke_chance_rsum(protocol: str) -> float:
    """Expected rSum of random scores under ``protocol`` on the smoke data (5 captions per image): i2t R@K =
    1 - C(5n - 5, K) / C(5n, K), t2i R@K = min(K / n, 1), with n the images of one evaluation (fold)."""
    definition = PROTOCOLS[protocol]
    n = SIZES["smoke"][definition.split] // definition.folds
    captions = CAPTIONS_PER_IMAGE * n
    i2t = sum(1 - math.comb(captions - CAPTIONS_PER_IMAGE, k) / math.comb(captions, k) for k in (1, 5, 10))
    t2i = sum(min(k / n, 1.0) for k in (1, 5, 10))
    return 100 * (i2t + t2i)


def void_check(name: str, expected: Expected) -> str | None:
    """Why the check of ``name`` would check nothing, or None: an rSum whose tolerance reaches down to the
    chance level of its protocol (a model scoring at random would pass)."""
    if _kind(name).suffix != " rSum":
        return None
    chance = smoke_chance_rsum(name.split()[-2])
    if expected.value - expected.tolerance > chance:
        return None
    return (f"not checked: its tolerance ±{format_value(name, expected.tolerance)} across float environments "
            f"reaches the chance level {chance:.1f}")


def verdict(name: str, measured: float | None, expected: Expected | None) -> str:
    """One checked line: ``<name> within ±<tolerance> of <expected>: ok`` or ``...: FAILED, measured <v>``, or
    ``<name>: not checked: ...`` when the tolerance reaches chance level (:func:`void_check`)."""
    if expected is None:
        return f"{name}: no expected value in {EXPECTED_FILE} (make refresh-notebook-outputs)"
    void = void_check(name, expected)
    if void:
        return f"{name}: {void}"
    head = (f"{name} within ±{format_value(name, expected.tolerance)} of "
            f"{format_value(name, expected.value)}")
    if measured is None:
        return f"{head}: FAILED, not measured"
    return f"{head}: ok" if expected.holds(measured) else f"{head}: FAILED, measured {format_value(name, measured)}"


def check_summary(measured_text: str, profile: str, expected: Mapping[str, Expected] | None = None) -> str:
    """What a checked cell prints: one :func:`verdict` per value of ``measured_text`` (the measured cell's
    lines) against the expected smoke values; under another profile, one line saying there is no check."""
    if profile != REGRESSION_PROFILE:
        return (f"regression check: {REGRESSION_PROFILE} profile only (this run: {profile}; the values above are "
                "not checked)")
    expected = read_expected() if expected is None else expected
    return "\n".join(verdict(name, value, expected.get(name))
                     for name, value in parse_quantities(measured_text).items())


def failures(measured: Mapping[str, float], expected: Mapping[str, Expected]) -> list[str]:
    """The verdicts of ``measured`` that are neither ``ok`` nor ``not checked`` (values of ``expected`` that
    were not measured are not failures here: a notebook checks only its own values)."""
    lines = (verdict(name, value, expected.get(name)) for name, value in measured.items())
    return [line for line in lines if not line.endswith(": ok") and ": not checked: " not in line]


def _read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """``nbformat.read`` as version 4, imported here: importing nbformat takes about 1.5 s (jsonschema's
    format checkers), and every notebook imports this module for :func:`smoke_summary` alone."""
    import nbformat

    return nbformat.read(path, as_version=4)


def is_checked(cell: nbformat.NotebookNode) -> bool:
    """Whether nbval compares this cell's outputs (a code cell marked ``# NBVAL_CHECK_OUTPUT``)."""
    return cell.cell_type == "code" and CHECK_MARKER in cell.source


def is_measured(cell: nbformat.NotebookNode) -> bool:
    """Whether this cell prints the measured smoke values (a code cell marked ``# REGRESSION_MEASURED``)."""
    return cell.cell_type == "code" and MEASURED_MARKER in cell.source


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", [])
                   if output.output_type == "stream" and output.name == "stdout")


def _measured(cells: Iterable[nbformat.NotebookNode]) -> dict[str, float]:
    """``{name: value}`` printed by the measured cells among ``cells``."""
    return parse_quantities("".join(_stdout(cell) for cell in cells if is_measured(cell)))


def measured_in_notebook(path: str | Path) -> dict[str, float]:
    """``{name: value}`` printed by the measured cells of an executed notebook."""
    return _measured(_read_notebook(path).cells)


def _refresh_verdicts(text: str, expected: Mapping[str, Expected]) -> str:
    """``text`` with each verdict line rewritten as it reads when its value is the expected one (``ok``)."""

    def line(text_line: str) -> str:
        match = _VERDICT.match(text_line)
        if not match or match["name"] not in expected:
            return text_line
        e = expected[match["name"]]
        return verdict(match["name"], e.value, e)

    return "".join(line(part.rstrip("\n")) + ("\n" if part.endswith("\n") else "")
                   for part in text.splitlines(keepends=True))


def _refresh_cell_verdicts(cell: nbformat.NotebookNode, expected: Mapping[str, Expected]) -> None:
    """The verdict lines of ``cell``'s printed output as they read at the expected values."""
    for output in cell.get("outputs", []):
        if output.output_type == "stream" and output.name == "stdout":
            output.text = _refresh_verdicts(output.text, expected)


def refresh_outputs(executed: str | Path, committed: str | Path, expected_file: str | Path | None = None
                    ) -> dict[str, float]:
    """Take the expected values of ``committed`` from ``executed`` (a papermill run of it under the smoke
    profile): the measured values go into the expected-values file (tolerances kept; a new value gets its
    kind's floor), and the outputs and counts of the checked cells go into ``committed`` with their verdicts
    as they now read (``ok``). Cells are matched by id, so papermill's injected cell and metadata stay out;
    every other cell keeps no output and no count. Returns the measured values."""
    import nbformat

    run = {cell.id: cell for cell in _read_notebook(executed).cells}
    measured = _measured(run.values())
    expected = read_expected(expected_file) if Path(expected_file or expected_path()).is_file() else {}
    for name, value in measured.items():
        old = expected.get(name)
        expected[name] = (Expected(value, _kind(name).tolerance_floor) if old is None
                          else Expected(value, old.tolerance, old.low, old.high, old.environments))
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
        _refresh_cell_verdicts(cell, expected)
    write_expected(expected, expected_file)
    nbformat.write(notebook, committed)
    return measured


def prepare_notebooks(out_dir: str | Path, profile: str = "smoke") -> list[Path]:
    """Every project notebook, in run order, with papermill's parameters cell for ``profile`` injected and
    nothing executed, as ``out_dir/<flat name>`` (what nbval then executes); one process for all of them."""
    import papermill


    root, out_dir = find_project_root(), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for notebook in project_notebooks(root):
        target = out_dir / executed_name(notebook)
        papermill.execute_notebook(str(root / notebook), str(target), parameters={"profile": profile},
                                   prepare_only=True, progress_bar=False)
        written.append(target)
    return written


NBVAL_SHARDS: tuple[tuple[str, ...], ...] = (("00_vse", "afa", "mvsen"), ("user",), ("leaderboard",))
"""The notebooks each nbval process of ``make notebook-tests`` executes, by folder (or top-level notebook).
Notebooks that share a smoke run stay in one shard (afa/01 reuses 00_vse's VSE∞ run; a run trained by two
processes at once would fail on its run lock)."""
NBVAL_STAGES: tuple[tuple[int, ...], ...] = ((0, 1), (2,))
"""Shards (indices of :data:`NBVAL_SHARDS`) run at once, stage after stage: the first two take about equal time
(00_vse with afa/ 88 s, mvsen/ 114 s, user/ 130 s on a 2-core Xeon); the leaderboard reuses the runs of both as
its seed 0, so it runs after them."""


def shard_index(executed: str | Path, shards: Sequence[Sequence[str]] = NBVAL_SHARDS) -> int:
    """Index of the shard of a prepared notebook (``afa__01_train_eval.ipynb``: folder ``afa``)."""
    name = Path(executed).name
    key = name.split("__")[0] if "__" in name else Path(name).stem
    for index, shard in enumerate(shards):
        if key in shard:
            return index
    raise ItrlibError(f"{name}: in no shard of itrlib.suite.regression.NBVAL_SHARDS (add its folder to one)")


def run_nbval(folder: str | Path, shards: Sequence[Sequence[str]] = NBVAL_SHARDS,
              stages: Sequence[Sequence[int]] = NBVAL_STAGES) -> int:
    """nbval over the notebooks prepared in ``folder`` (:func:`prepare_notebooks`), one pytest process per
    shard, the shards of a stage at once and the stages in order, each process with ``OMP_NUM_THREADS`` = CPUs /
    shards of its stage unless set; prints every shard's report and returns 0 when all passed, else the first
    failing exit code (a failing stage still lets the next run: each notebook trains what it lacks)."""
    folder = Path(folder)
    prepared = [folder / executed_name(nb) for nb in project_notebooks() if (folder / executed_name(nb)).is_file()]
    if not prepared:
        raise ItrlibError(f"{folder}: no prepared notebooks (python -m itrlib.suite.regression prepare {folder})")
    if sorted(i for stage in stages for i in stage) != list(range(len(shards))):
        raise ItrlibError(f"nbval stages {stages} must name every shard of {len(shards)} exactly once")
    by_shard = [[p for p in prepared if shard_index(p, shards) == i] for i in range(len(shards))]
    codes = []
    for stage in stages:
        present = [index for index in stage if by_shard[index]]
        threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // max(len(present), 1)))
        runs = []
        for index in present:
            paths = by_shard[index]
            log = folder / f"nbval-shard-{index + 1}.log"
            print(f"nbval shard {index + 1}: {len(paths)} notebooks ({', '.join(shards[index])}), "
                  f"OMP_NUM_THREADS={threads}, report in {log}", flush=True)
            with log.open("w", encoding="utf-8") as handle:
                command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           *map(str, paths)]
                process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                           env=os.environ | {"OMP_NUM_THREADS": threads})
            runs.append((index, log, process))
        for index, log, process in runs:
            codes.append(process.wait())
            print(f"---- nbval shard {index + 1} (exit code {codes[-1]}) ----\n{log.read_text(encoding='utf-8')}",
                  flush=True)
    return next((code for code in codes if code), 0)


# ---- tolerances from the spread across float environments ----

def float_environments(cpu_flags: str | None = None) -> dict[str, dict[str, str]]:
    """:data:`FLOAT_ENVIRONMENTS`, plus torch's AVX-512 dispatch with one thread where the CPU has AVX-512
    (``cpu_flags``: the flags line of /proc/cpuinfo; read from there by default)."""
    if cpu_flags is None:
        cpuinfo = Path("/proc/cpuinfo")
        cpu_flags = cpuinfo.read_text(encoding="utf-8") if cpuinfo.is_file() else ""
    environments = dict(FLOAT_ENVIRONMENTS)
    if "avx512f" in cpu_flags.split():
        environments |= AVX512_ENVIRONMENT
    return environments


def tolerances(measured_by_environment: Mapping[str, Mapping[str, float]], reference: str | None = None
               ) -> dict[str, Expected]:
    """``{name: Expected}`` from the values measured in each float environment: the expected value is the
    ``reference`` environment's (default: the first; for a value it lacks, the first environment that has
    it), the tolerance :data:`TOLERANCE_MARGIN` times the largest deviation from it (at least the kind's
    floor), rounded up to the printed precision."""
    reference = next(iter(measured_by_environment), None) if reference is None else reference
    if reference not in measured_by_environment:
        raise ItrlibError(f"no measurements of the reference environment {reference!r}")
    ordered = [measured_by_environment[reference], *measured_by_environment.values()]
    expected = {}
    for name in dict.fromkeys(name for by_name in ordered for name in by_name):
        value = next(by_name[name] for by_name in ordered if name in by_name)
        values = [by_name[name] for by_name in measured_by_environment.values() if name in by_name]
        deviation = max(abs(v - value) for v in values)
        kind = _kind(name)
        tolerance = max(kind.tolerance_floor, TOLERANCE_MARGIN * deviation)
        step = 10 ** -RSUM_DECIMALS if kind.suffix == " rSum" else 10 ** (math.floor(math.log10(tolerance)) - 1)
        tolerance = math.ceil(round(tolerance / step, 6)) * step
        expected[name] = Expected(value, float(f"{tolerance:.6g}"), min(values), max(values), len(values))
    return expected


Measurements = dict[tuple[str, str], dict[str, float]]
"""``{(machine, environment): {name: value}}``: one float environment's smoke values on one machine."""
_MEASURED_COLUMNS = ("machine", "environment", "quantity", "value")


def machine_label() -> str:
    """This machine as the measurements name it: architecture, CPU model and CPU count."""
    return f"{platform.machine()}, {_cpu_name()}, {os.cpu_count()} CPUs"


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def read_measured(path: str | Path) -> Measurements:
    """Every row of a measured-values file (:data:`MEASURED_FILE`), in file order; no file: none."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and set(rows[0]) != set(_MEASURED_COLUMNS):
        raise ItrlibError(f"{path}: columns {sorted(rows[0])}, expected {list(_MEASURED_COLUMNS)}")
    measured: Measurements = {}
    for row in rows:
        measured.setdefault((row["machine"], row["environment"]), {})[row["quantity"]] = float(row["value"])
    return measured


def write_measured(measured: Measurements, path: str | Path) -> Path:
    """Write ``measured`` as the measured-values CSV (machines and environments in order, names sorted)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_MEASURED_COLUMNS)
    for (machine, environment), values in measured.items():
        for name in sorted(values):
            writer.writerow([machine, environment, name, format_value(name, values[name])])
    atomic_write_text(path, buffer.getvalue())
    return Path(path)


def _machine_letters(measured: Measurements) -> dict[str, str]:
    return {machine: chr(ord("A") + i) for i, machine in enumerate(dict.fromkeys(m for m, _ in measured))}


def spread_table(measured: Measurements, expected: Mapping[str, Expected]) -> str:
    """Markdown table: each checked value on every machine (A, B, ...) and environment, its range and
    tolerance."""
    letters = _machine_letters(measured)
    lines = ["| value | " + " | ".join(f"{letters[m]} {e}" for m, e in measured) + " | spread | tolerance |",
             "|---|" + "---:|" * (len(measured) + 2)]
    for name in sorted(expected):
        e = expected[name]
        cells = [format_value(name, values[name]) if name in values else "–" for values in measured.values()]
        spread = "" if e.low is None else format_value(name, e.high - e.low)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {spread} | ±{format_value(name, e.tolerance)} |")
    return "\n".join(lines)


def write_spread_report(measured: Measurements, expected: Mapping[str, Expected], path: str | Path) -> Path:
    """``README.md`` beside the expected values: the machines and environments measured, the rule, and the
    spread table."""
    letters = _machine_letters(measured)
    machines = "\n".join(f"- {letter}: {machine}; " + ", ".join(f"`{e}`" for m, e in measured if m == machine)
                         for machine, letter in letters.items())
    described = "\n".join(f"- `{name}`: " + (" ".join(f"{k}={v}" for k, v in variables.items())
                                             or "the machine's defaults")
                          for name, variables in (FLOAT_ENVIRONMENTS | AVX512_ENVIRONMENT).items()
                          if any(e == name for _, e in measured))
    reference = next(iter(letters), "?")
    chance = {protocol: smoke_chance_rsum(protocol) for protocol in ("f30k1k", "coco1k")}
    text = f"""# Expected smoke values and their tolerances

Written by `make measure-tolerances` (`python -m itrlib.suite.regression measure-spread`) from `measured.csv`;
`expected.csv` is what the notebooks' checked cells compare with (`make test`). Do not edit by hand: `make
refresh-notebook-outputs` updates the expected values after a change meant to move them (tolerances kept),
`make measure-tolerances` re-measures the tolerances on the machine it runs on.

## How the tolerances were measured
Every notebook was executed from scratch under the smoke profile in each float environment below, on each
machine below. `make measure-tolerances` replaces the rows of the machine it runs on and keeps the others, so
the tolerances cover every CPU measured. The expected value is the one of `native` on machine
{letters.get(reference, "A")} (or, for a value first measured later, of the first environment that measured it); a
value's tolerance is {TOLERANCE_MARGIN:g} × its largest deviation from it across all
machines and environments, at least {KINDS[0].tolerance_floor:g} for an rSum (one flipped i2t query among the smoke
profile's 40 f30k1k test images moves an rSum by 2.5) and {KINDS[1].tolerance_floor:g} for a training loss, rounded
up to the printed precision. A `first-steps loss` is the mean training loss of a run's first {FIRST_STEPS} steps (at
initialisation and after one update), at least {FIRST_STEPS_FLOOR:g}: it checks the runs whose smoke training is
chaotic (MVSEN: its smoke rSums spread over tens of points between float environments, and its notebooks show them
without checking them).
An rSum whose tolerance reaches down to the chance level of its protocol (random
scores: {chance["f30k1k"]:.1f} at f30k1k, {chance["coco1k"]:.1f} at coco1k on the smoke data) would pass for a model
that learned nothing: its verdict says `not checked` instead.

Machines:
{machines}

Float environments:
{described}

## Measured values
{spread_table(measured, expected)}
"""
    atomic_write_text(path, text)
    return Path(path)


def measured_in_folder(folder: str | Path) -> dict[str, float]:
    """Every measured value of the executed notebooks in ``folder`` (one float environment's run)."""

    values: dict[str, float] = {}
    for path in sorted(Path(folder).glob("*.ipynb")):
        values |= measured_in_notebook(path)
    return values


def rewrite_verdicts(expected: Mapping[str, Expected], root: str | Path | None = None) -> None:
    """Rewrite the verdict lines of the committed notebooks' checked cells as they read with ``expected``
    (``ok`` at the expected value: what nbval compares); a notebook whose lines do not change is not written."""
    import nbformat


    root = Path(root or find_project_root())
    for notebook_path in project_notebooks(root):
        notebook = _read_notebook(root / notebook_path)
        before = nbformat.writes(notebook)
        for cell in notebook.cells:
            if is_checked(cell):
                _refresh_cell_verdicts(cell, expected)
        if nbformat.writes(notebook) != before:
            nbformat.write(notebook, root / notebook_path)


def record_tolerances(folders: Mapping[str, str | Path], expected_file: str | Path | None = None,
                      machine: str | None = None) -> dict[str, Expected]:
    """Tolerances from the executed notebooks of each environment of this ``machine`` (``{environment:
    folder}``) and every other machine's rows of the measured-values file beside ``expected_file``: writes
    that file, the expected values, their README, and (for the project's own ``expected.csv``) the committed
    notebooks' verdict lines. The reference is ``native`` on the first machine of the file."""
    machine = machine or machine_label()
    path = Path(expected_file) if expected_file else expected_path()
    measured_path = path.with_name(MEASURED_FILE.name)
    here = {(machine, environment): measured_in_folder(folder) for environment, folder in folders.items()}
    # other machines' rows, less the values no notebook prints any more (a check that was replaced)
    current = set().union(*here.values())
    measured = {key: {name: v for name, v in values.items() if name in current}
                for key, values in read_measured(measured_path).items() if key[0] != machine}
    measured = {key: values for key, values in measured.items() if values} | here
    labels = {f"{m}: {e}": values for (m, e), values in measured.items()}
    first = next(iter(measured))[0]
    expected = tolerances(labels, f"{first}: native" if (first, "native") in measured else None)
    write_measured(measured, measured_path)
    write_expected(expected, path)
    write_spread_report(measured, expected, path.parent / "README.md")
    if expected_file is None:
        rewrite_verdicts(expected)
    return expected


SMOKE_NOTEBOOKS_COMMAND = (sys.executable, "-m", "itrlib.suite", "notebooks")
"""The suite's notebook runner, as :func:`measure_spread` calls it once per float environment."""


def measure_spread(out_dir: str | Path, environments: Mapping[str, Mapping[str, str]] | None = None
                   ) -> dict[str, Expected]:
    """Run every notebook under the smoke profile once per float environment (from scratch: the smoke runs
    are removed before each), keep each environment's executed notebooks in ``out_dir/<environment>``, then
    :func:`record_tolerances`. Takes as long as ``make notebook-tests`` per environment."""
    root, out_dir = find_project_root(), Path(out_dir)
    environments = float_environments() if environments is None else environments
    smoke = root / "outputs" / "smoke"
    folders = {}
    for name, variables in environments.items():
        shutil.rmtree(smoke, ignore_errors=True)
        print(f"float environment {name}: {' '.join(f'{k}={v}' for k, v in variables.items()) or 'defaults'}",
              flush=True)
        command = [*SMOKE_NOTEBOOKS_COMMAND, "--profile", "smoke"]
        if subprocess.run(command, cwd=root, env=os.environ | dict(variables), check=False).returncode:
            raise ItrlibError(f"the smoke notebooks failed under float environment {name}")
        folders[name] = out_dir / name
        shutil.rmtree(folders[name], ignore_errors=True)
        shutil.copytree(smoke / "notebooks", folders[name])
    return record_tolerances(folders)


def main(argv: list[str] | None = None) -> int:
    """``python -m itrlib.suite.regression {prepare,nbval,refresh-outputs,tolerances,measure-spread}`` (the
    Makefile's)."""
    parser = argparse.ArgumentParser(prog="python -m itrlib.suite.regression", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="write every notebook with the profile's parameters injected")
    prepare.add_argument("out_dir", type=Path)
    prepare.add_argument("--profile", default="smoke", help="parameter injected into every notebook (default: smoke)")
    refresh = commands.add_parser("refresh-outputs",
                                  help="take the expected values and checked outputs from an executed notebook")
    refresh.add_argument("executed", type=Path)
    refresh.add_argument("committed", type=Path)
    nbval = commands.add_parser("nbval", help="run nbval over prepared notebooks, one process per shard at once")
    nbval.add_argument("folder", type=Path)
    measure = commands.add_parser("measure-spread", help="run the smoke notebooks under every float environment "
                                                         "and write the tolerances")
    measure.add_argument("out_dir", type=Path, help="where each environment's executed notebooks are kept")
    record = commands.add_parser("tolerances", help="write the tolerances from folders of executed notebooks "
                                                     "(this machine's environments) and the other machines' rows")
    record.add_argument("folders", nargs="+", metavar="ENVIRONMENT=FOLDER", help="one per float environment")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            written = prepare_notebooks(args.out_dir, args.profile)
            print(f"{len(written)} notebooks prepared in {args.out_dir} (profile={args.profile})")
        elif args.command == "refresh-outputs":
            measured = refresh_outputs(args.executed, args.committed)
            print(f"{args.committed}: {len(measured)} expected values and the checked outputs refreshed "
                  f"from {args.executed}")
        elif args.command == "nbval":
            return run_nbval(args.folder)
        elif args.command == "measure-spread":
            expected = measure_spread(args.out_dir)
            print(f"{len(expected)} tolerances written to {expected_path()}")
        else:
            expected = record_tolerances(dict(item.split("=", 1) for item in args.folders))
            print(f"{len(expected)} tolerances written to {expected_path()}")
    except ItrlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
