"""``outputs/<profile>/REPORT.md``: one page that assembles what the notebooks of a profile wrote.

Read from the profile's folder only (tables as CSV with their caption columns, figures, the notebooks'
``timings.json``), so ``make report`` reassembles it from finished runs without training or evaluating: the
leaderboard first, then every table with, for each of our rows that has a paper row of the same model and
protocol, the paper's number, ours and the difference per metric; every figure; what the profile cannot
support and why; the protocol pitfalls; the errata of the papers' own tables; the wall time of each notebook and the
training and evaluation time of each run.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

import pandas as pd

from itrlib.evaluation.protocols import PROTOCOLS
from itrlib.io import atomic_write_text
from itrlib.progress import format_seconds
from itrlib.suite.profiles import Profile, get_profile
from itrlib.suite.regression import machine_label
from itrlib.suite.report.paper import load_reference
from itrlib.suite.report.run_times import SECONDS_COLUMNS, run_time_frame, run_time_table
from itrlib.suite.report.tables import markdown_table

REPORT_FILE = "REPORT.md"
METRICS = ("i2t R@1", "i2t R@5", "i2t R@10", "t2i R@1", "t2i R@5", "t2i R@10", "rSum")
"""The metric columns of a written table that the report compares with the papers."""
_NOT_KEYS = {"source", "images", *METRICS, "i2t medR", "t2i medR", "i2t meanR", "t2i meanR"}
LEADERBOARD_PREFIX = "leaderboard"
ERRATA_PATTERN = r"SUM MISMATCH|typo|copy error"
"""What a reference note says when a paper's printed row disagrees with itself or its text."""
OURS_PREFIX = "itrlib"
"""A table row is ours when its ``source`` starts with this (``itrlib (embedded)``), else a paper's."""

PITFALLS = """- **F30K 1K, COCO 5-fold 1K and COCO 5K are three protocols, not one.** `f30k1k` ranks 1,000 test images
  once; `coco1k` cuts the 5,000 `testall` images into 5 folds of 1,000 and averages every metric over the folds;
  `coco5k` ranks all 5,000 at once. A COCO 1K rSum is far higher than a COCO 5K rSum of the same model: compare
  numbers of one protocol only.
- **Ties.** A ground truth tied with another item ranks after it (`eval.ties=pessimistic`, the default): a
  tie never flatters a model. The authors' evaluation code takes the first index among ties; on float scores
  the two agree unless scores tie exactly (a model that outputs constants scores 0 here, not chance).
- **rSum** is the sum of the six recalls (R@1, 5, 10 both ways), at most 600; its test-set noise on small
  synthetic test sets is several points, so the leaderboard's intervals, not single numbers, say whether a gap
  is real.
- **Paper numbers are printed numbers.** A few rows of the papers' own tables disagree with their sums or
  their text (errata below); the reference numbers keep what the papers print and note the disagreement."""


def _git_commit(root: Path) -> str:
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def read_tables(tables_dir: Path) -> dict[str, pd.DataFrame]:
    """``{stem: table}`` of every CSV in ``tables_dir`` (caption columns included), by name."""
    return {path.stem: pd.read_csv(path) for path in sorted(tables_dir.glob("*.csv"))}


def _caption(frame: pd.DataFrame, item: str) -> str:
    column = f"caption_{item}"
    return str(frame[column].iloc[0]) if column in frame and len(frame) else ""


def key_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that name a row (method, variant, protocol, swept value, ...): neither a metric, the
    source, the test images nor a caption column."""
    return [c for c in frame.columns if c not in _NOT_KEYS and not c.startswith("caption_")]


def paper_differences(frame: pd.DataFrame) -> pd.DataFrame:
    """Each of our rows that has a paper row with the same key (:func:`key_columns`): per metric ``ours / paper
    (difference)``, and the paper row's source. Empty when the table has no paper rows."""
    if "source" not in frame:
        return pd.DataFrame()
    keys, metrics = key_columns(frame), [m for m in METRICS if m in frame]
    ours_mask = frame["source"].astype(str).str.startswith(OURS_PREFIX)
    ours, paper = frame[ours_mask], frame[~ours_mask]
    if ours.empty or paper.empty or not keys:
        return pd.DataFrame()
    merged = ours[keys + metrics].merge(paper[[*keys, "source", *metrics]], on=keys, suffixes=("", " (paper)"))
    rows = []
    for record in merged.to_dict("records"):
        row = {k: record[k] for k in keys} | {"paper row": record["source"]}
        for metric in metrics:
            ours_value, paper_value = record[metric], record[f"{metric} (paper)"]
            row[f"{metric}: ours / paper (Δ)"] = ("–" if pd.isna(ours_value) or pd.isna(paper_value)
                           else f"{ours_value:.1f} / {paper_value:.1f} ({ours_value - paper_value:+.1f})")
        rows.append(row)
    return pd.DataFrame(rows)


SPREAD_FACTOR = 2.0
"""A difference between two rows of a study is beyond seed noise when it exceeds this many seed standard
deviations of the study's method (its headline runs in the leaderboard)."""
TABLE_METHODS = {"vse": ("VSE∞",), "afa": ("AFA",), "user": ("USER (SGE)", "USER (CGE)"),
                 "mvsen": ("MVSEN t2i", "MVSEN i2t")}
"""Leaderboard methods whose seed spread a table's rows are read against, by the table's name prefix (the largest
of their standard deviations)."""


def seed_spread(tables: dict[str, pd.DataFrame], stem: str, protocol: str) -> float | None:
    """The seed standard deviation of rSum that applies to table ``stem`` under ``protocol``: the largest among its
    :data:`TABLE_METHODS` in the leaderboard of that protocol (None: no leaderboard, or one seed)."""
    board = tables.get(f"{LEADERBOARD_PREFIX}_{protocol}")
    methods = TABLE_METHODS.get(stem.split("_")[0], ())
    if board is None or "rSum std" not in board or not methods:
        return None
    spreads = board.loc[board["method"].isin(methods), "rSum std"].dropna()
    return float(spreads.max()) if not spreads.empty else None


def spread_marks(frame: pd.DataFrame, stem: str, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Our rows of a study table (per protocol and direction when it has them), each with its rSum, its distance
    to the best of them and whether that distance exceeds :data:`SPREAD_FACTOR` seed standard deviations
    (:func:`seed_spread`). Empty when the table has fewer than two of our rows or no seed spread applies, and for
    tables of several methods (a ``method`` or ``model`` column): the leaderboard's intervals compare those."""
    if "rSum" not in frame or {"method", "model"} & set(frame.columns):
        return pd.DataFrame()
    ours = frame[frame["source"].astype(str).str.startswith(OURS_PREFIX)] if "source" in frame else frame
    groups = [c for c in ("protocol", "direction") if c in ours]
    keys = [c for c in key_columns(ours) if c not in groups]
    rows = []
    for _, part in (ours.groupby(groups, sort=False) if groups else [((), ours)]):
        protocol = part["protocol"].iloc[0] if "protocol" in part else _caption(frame, "protocol").split(" ")[0]
        sigma = seed_spread(tables, stem, protocol)
        if sigma is None or len(part) < 2:
            continue
        best = part["rSum"].max()
        for record in part.to_dict("records"):
            gap = record["rSum"] - best
            rows.append({**{c: record[c] for c in groups + keys}, "rSum": record["rSum"], "vs best row": gap,
                         "seed std": sigma,
                         "beyond seed spread": "yes" if abs(gap) > SPREAD_FACTOR * sigma else "no"})
    return pd.DataFrame(rows)


def errata() -> pd.DataFrame:
    """Rows of the papers' tables whose reference note records a disagreement in the paper itself (a typo, a
    sum that does not add up): paper, table, protocol, model and the note."""
    reference = load_reference("paper_tables.csv")
    rsum = reference[(reference["metric"] == "rsum") & reference["note"].str.contains(ERRATA_PATTERN)]
    return rsum[["paper", "table", "dataset", "protocol", "method", "variant", "note"]].reset_index(drop=True)


def limitations(spec: Profile) -> list[str]:
    """What the profile cannot support, and why (from its definition)."""
    items = []
    if spec.synthetic:
        items.append("Its numbers are not comparable with the papers': the data are the embedded synthetic dataset "
                     "(generated features and captions, smaller test sets) and the text encoder is the packaged "
                     "MiniLM, not BERT-base; the papers' rows are printed beside ours for scale only, and the "
                     "differences below measure that gap, not a reproduction error.")
    missing = [p for p in PROTOCOLS if p not in spec.protocols]
    if missing:
        items.append(f"Protocols not evaluated under this profile: {', '.join(missing)}.")
    if spec.reduced_studies:
        items.append("The studies train reduced sets (fewer ablation rows, sweep points and timing sizes) with a "
                     "few optimiser steps per run: their code paths, not their effects.")
    if spec.seeds < 3:
        items.append(f"The leaderboard trains {spec.seeds} seed(s) per method: too few for a seed spread that "
                     "means much.")
    return items


def _timings(notebooks_dir: Path) -> tuple[pd.DataFrame, float]:
    path = notebooks_dir / "timings.json"
    if not path.is_file():
        return pd.DataFrame(), 0.0
    entries = json.loads(path.read_text(encoding="utf-8"))["notebooks"]
    frame = pd.DataFrame([{"notebook": e["notebook"], "started": e["started"],
                           "wall time": format_seconds(e["seconds"]), "ok": "yes" if e["ok"] else "FAILED"}
                          for e in entries])
    return frame, float(sum(e["seconds"] for e in entries))


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def report_text(profile: str, root: str | Path = ".") -> str:
    """The Markdown of the profile's report, from what ``outputs/<profile>/`` holds now."""
    root = Path(root)
    spec = get_profile(profile)
    out = root / spec.output_root
    tables = read_tables(root / spec.tables_dir)
    timing_frame, total = _timings(root / spec.notebooks_dir)
    runs = run_time_frame(root / spec.runs_dir)
    run_seconds = {column: format_seconds(runs[column].sum()) for column in SECONDS_COLUMNS} if len(runs) else {}
    compute = (f"; the {len(runs)} runs recorded {run_seconds['training s']} of training and "
               f"{run_seconds['evaluation s']} of test evaluation (per run below)" if run_seconds else "")
    parts = [f"# itrlib report: profile `{profile}`",
             f"Assembled {datetime.now().strftime('%Y-%m-%d %H:%M')} from `{spec.output_root}/` at commit "
             f"{_git_commit(root)} on {machine_label()}; notebooks' wall time in their last execution "
             f"{format_seconds(total) if total else 'not recorded'}{compute}. Every number comes from a file the "
             "notebooks wrote; the data, text encoder and budget of each table's rows are in its caption."]
    if not tables:
        parts.append(f"No tables yet: run the notebooks (`make reproduce-tables PROFILE={profile}`).")
    leaderboard = {stem: t for stem, t in tables.items() if stem.startswith(LEADERBOARD_PREFIX)}
    if leaderboard:
        parts.append("## Leaderboard")
        for stem in sorted(leaderboard, key=lambda stem: ("_claims_" in stem, stem)):  # each protocol's board first
            parts.append((root / spec.tables_dir / f"{stem}.md").read_text(encoding="utf-8").strip())
    parts.append("## What this profile cannot support")
    parts.append("\n".join(f"- {item}" for item in limitations(spec)) or "- Nothing beyond the papers' own limits.")
    parts.append("## Protocol pitfalls\n" + PITFALLS)
    parts.append("## Tables: ours beside the papers'")
    parts.append("Per table: its title (a link to the table with its full caption), the data and budget of its "
                 "rows, and for each of our rows that has a paper row of the same model, variant and protocol, "
                 "`ours / paper (difference)` per metric.")
    for stem, frame in tables.items():
        if stem.startswith(LEADERBOARD_PREFIX):
            continue
        link = _relative(root / spec.tables_dir / f"{stem}.md", out)
        section = [f"### [{_caption(frame, 'title') or stem}]({link})",
                   f"*Data:* {_caption(frame, 'data')} *Training:* {_caption(frame, 'training')}"]
        differences = paper_differences(frame)
        section.append(markdown_table(differences) if not differences.empty
                       else "No paper row matches one of ours (the papers print none for these rows).")
        marks = spread_marks(frame, stem, tables)
        if not marks.empty:
            section.append(f"Our rows against the best of them: a gap beyond {SPREAD_FACTOR:g} seed standard "
                           "deviations of the method's headline runs (leaderboard) is marked `yes`; `no` is within "
                           "seed noise.")
            section.append(markdown_table(marks))
        parts.append("\n\n".join(section))
    figures = sorted((root / spec.figures_dir).glob("*.png"))
    parts.append("## Figures\n" + ("\n".join(f"- [{p.name}]({_relative(p, out)})" for p in figures)
                                   or "None yet."))
    wrong = errata()
    parts.append("## Errata in the papers' tables\n" + (markdown_table(wrong) if not wrong.empty else "None noted."))
    parts.append("## Wall time per notebook\n" + (markdown_table(timing_frame) if not timing_frame.empty
                                                  else "Not recorded (no `notebooks/timings.json`)."))
    parts.append("## Time per run\nTraining (the epochs' optimiser steps, summed over every process that trained the "
                 "run, so a resumed run counts once) and test evaluation (encoding and scoring once per split, "
                 "ranking per protocol), as each run folder recorded them, and when (UTC) each run last trained; a "
                 "run reused by a later notebook costs nothing there, and a composite (–) trains nothing and "
                 "records no time of its own.\n\n"
                 + (markdown_table(run_time_table(runs)) if len(runs) else "No runs yet."))
    return "\n\n".join(parts) + "\n"


def write_report(profile: str, root: str | Path = ".") -> Path:
    """Write ``outputs/<profile>/REPORT.md`` (atomically) and return its path."""
    root = Path(root)
    path = root / get_profile(profile).output_root / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, report_text(profile, root))
    return path
