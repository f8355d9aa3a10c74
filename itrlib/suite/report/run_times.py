"""Compute time per run of a profile, read from the run folders' own records (nothing is re-measured).

A run's training seconds are the sum of the ``epoch_seconds`` of its validation records in ``metrics.jsonl``
(each epoch's training steps, whichever process trained them: a killed and resumed run adds up across
processes); its test-evaluation seconds come from the ``timing`` of its ``eval-<protocol>.json`` files, counting
the encoding and scoring of one split once even when several protocols rank the same scores (``coco1k`` and
``coco5k`` both rank ``testall``). Dev validation after each epoch is in neither column.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

from itrlib.progress import format_seconds
from itrlib.runs.trained import training_curves

EVAL_GLOB = "eval-*.json"
SECONDS_COLUMNS = ("training s", "evaluation s")


def run_evaluation_seconds(run_dir: Path) -> float:
    """Seconds of the run's recorded test evaluations: encode + score once per split, rank once per protocol;
    NaN when none recorded its time (a composite combines its members' saved scores and records none)."""
    per_split: dict[str, float] = {}
    ranking = 0.0
    for path in sorted(run_dir.glob(EVAL_GLOB)):
        result = json.loads(path.read_text(encoding="utf-8"))
        timing = result.get("timing")
        if timing:
            per_split[str(result.get("split"))] = timing.get("encode_s", 0.0) + timing.get("score_s", 0.0)
            ranking += timing.get("rank_s", 0.0)
    return sum(per_split.values()) + ranking if per_split else math.nan


def _model_name(run_dir: Path) -> str:
    config = run_dir / "config.yaml"
    if not config.is_file():
        return "composite"
    return str((yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("model", {}).get("name", "?"))


def run_time_frame(runs_dir: str | Path) -> pd.DataFrame:
    """One row per run folder under ``runs_dir`` that holds a training log or an evaluation: ``run``, ``model``,
    ``steps`` (optimiser steps logged), ``trained`` (UTC time of its last logged record: when the run that the
    results come from was trained), ``training s`` and ``evaluation s`` (NaN: none recorded); sorted by run
    name. Empty if none."""
    rows = []
    for run_dir in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()) if Path(runs_dir).is_dir() else []:
        has_log = (run_dir / "metrics.jsonl").is_file()
        if not has_log and not any(run_dir.glob(EVAL_GLOB)):
            continue
        steps_frame, val = training_curves(run_dir) if has_log else (pd.DataFrame(), pd.DataFrame())
        training = float(val["epoch_seconds"].dropna().sum()) if "epoch_seconds" in val else math.nan
        steps = max((int(f["step"].max()) for f in (steps_frame, val) if "step" in f and len(f)), default=0)
        rows.append({"run": run_dir.name, "model": _model_name(run_dir), "steps": steps,
                     "trained": _last_record_time(steps_frame, val), "training s": training,
                     "evaluation s": run_evaluation_seconds(run_dir)})
    return pd.DataFrame(rows, columns=["run", "model", "steps", "trained", *SECONDS_COLUMNS])


def _last_record_time(*frames: pd.DataFrame) -> str:
    times = [float(f["time"].max()) for f in frames if "time" in f and len(f)]
    return datetime.fromtimestamp(max(times), UTC).strftime("%Y-%m-%d %H:%M") if times else ""


def run_time_table(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`run_time_frame` for reading: seconds as ``3 min 05 s`` (``–``: not recorded), and a last row with
    the totals."""
    if frame.empty:
        return frame
    total = {"run": "total", "model": "", "steps": int(frame["steps"].sum()), "trained": "",
             **{column: float(frame[column].sum()) for column in SECONDS_COLUMNS}}
    shown = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
    for column in SECONDS_COLUMNS:
        shown[column.replace(" s", "")] = shown.pop(column).map(lambda s: "–" if math.isnan(s) else format_seconds(s))
    return shown
