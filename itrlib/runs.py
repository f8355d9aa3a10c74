"""Operations on run folders (``outputs/runs/<name>/``) used by the CLI and the notebooks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from itrlib.data.precomp import open_split
from itrlib.engine.components import load_run
from itrlib.engine.trainer import METRICS_FILE
from itrlib.evaluation.evaluate import evaluate_split
from itrlib.evaluation.protocols import get_protocol
from itrlib.io import atomic_write_json, read_jsonl


def eval_path(run_dir: str | Path, protocol: str) -> Path:
    return Path(run_dir) / f"eval-{protocol}.json"


def evaluate_run(run_dir: str | Path, protocol: str, *, data_root: str | None = None, split: str | None = None,
                 checkpoint: str = "best", device: str = "auto", batch_size: int | None = None,
                 progress: bool = True) -> dict:
    """Evaluate a run's checkpoint under ``protocol`` and write ``eval-<protocol>.json`` atomically.

    ``data_root`` defaults to the run's ``data.root``; ``split`` to the protocol's split (``test`` for
    f30k1k, ``testall`` for the COCO protocols).
    """
    run = load_run(run_dir, checkpoint=checkpoint, device=device)
    spec = get_protocol(protocol)
    root = data_root or run.config.data.root
    data = open_split(root, split or spec.split, check_features=run.config.data.check_features)
    result = evaluate_split(run.model, data, run.tokenizer, spec,
                            batch_size=batch_size or run.config.train.eval_batch_size, device=run.device,
                            amp=run.config.train.amp and run.device.type == "cuda", progress=progress)
    result.update({"run": str(run_dir), "data_root": str(root), "checkpoint": checkpoint,
                   "checkpoint_epoch": run.checkpoint.get("epoch"), "model": run.config.model.name})
    atomic_write_json(eval_path(run_dir, protocol), result)
    return result


def load_eval(run_dir: str | Path, protocol: str) -> dict:
    path = eval_path(run_dir, protocol)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `python -m itrlib eval --run {run_dir} "
                                f"--protocol {protocol}` first")
    return json.loads(path.read_text(encoding="utf-8"))


def training_curves(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(step records, validation records) of a run's ``metrics.jsonl`` as data frames."""
    records = read_jsonl(Path(run_dir) / METRICS_FILE)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return frame, frame
    return (frame[frame["event"] == "step"].reset_index(drop=True),
            frame[frame["event"] == "val"].reset_index(drop=True))
