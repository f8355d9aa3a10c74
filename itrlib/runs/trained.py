"""Trained run folders (``outputs/<profile>/runs/<name>/``): evaluate a checkpoint, its saved scores, its curves.

Composite runs live in :mod:`itrlib.runs.composite`; :mod:`itrlib.runs.any_run` takes a folder of either kind."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from itrlib.data.precomp import PrecompSplit, open_split
from itrlib.engine.checkpoint import BEST, LAST
from itrlib.engine.components import LoadedRun, load_run, load_run_config
from itrlib.engine.trainer import METRICS_FILE
from itrlib.errors import DataError, ItrlibError
from itrlib.evaluation.evaluate import Shortlist, SplitEvaluation, evaluate_split
from itrlib.evaluation.protocols import Protocol, get_protocol, whole_split
from itrlib.io import atomic_write_json, check_writable, read_jsonl
from itrlib.progress import say
from itrlib.runs.scores import file_stamp, load_scores, write_scores

CHECKPOINTS = {"best": BEST, "last": LAST}


def eval_path(run_dir: str | Path, protocol: str) -> Path:
    return Path(run_dir) / f"eval-{protocol}.json"


def evaluate_trained(run_dir: str | Path, protocols: Sequence[str], *, data_root: str | None = None,
                           split: str | None = None, checkpoint: str = "best", device: str = "auto",
                           batch_size: int | None = None, ties: str | None = None,
                           save_scores: str | None = None, max_pairs_per_block: int | None = None,
                           progress: bool = True, reuse: bool = False) -> dict[str, dict]:
    """Evaluate a trained run's checkpoint under ``protocols``; write each ``eval-<protocol>.json`` atomically.

    Protocols on the same split are encoded and scored once (COCO 1K folds are blocks of the 5K matrix).
    ``data_root`` defaults to the run's ``data.root``; ``split`` to each protocol's split (``test`` for
    f30k1k, ``testall`` for the COCO protocols). ``ties``, ``save_scores`` and ``max_pairs_per_block``
    default to the run's ``eval`` section.
    ``reuse``: a split whose protocols all have an ``eval-<protocol>.json`` of the same checkpoint file
    (its size and modification time), data folder, split and tie rule (and, when scores are to be saved,
    fresh saved scores) is read back instead of evaluated again.
    """
    config = load_run_config(run_dir)
    if protocols:  # before minutes of evaluation
        check_writable(eval_path(run_dir, protocols[0]), "evaluation results")
    ties, save_scores = ties or config.eval.ties, save_scores or config.eval.save_scores
    root = data_root or config.data.root
    specs = [get_protocol(p) for p in dict.fromkeys(protocols)]
    if split:
        specs = [dataclasses.replace(spec, split=split) for spec in specs]
    results: dict[str, dict] = {}
    if reuse and checkpoint in CHECKPOINTS and (Path(run_dir) / CHECKPOINTS[checkpoint]).is_file():
        stamp = file_stamp(Path(run_dir) / CHECKPOINTS[checkpoint])
        results = reusable_by_split(specs, lambda s: _reusable(run_dir, s, checkpoint, stamp, root, ties, save_scores))
        for result in results.values():
            say(eval_line(run_dir, result) + " (reused)", progress)
        specs = [s for s in specs if s.name not in results]
    if not specs:
        return {p: results[p] for p in protocols}
    run = load_run(run_dir, checkpoint=checkpoint, device=device)
    for split_name in dict.fromkeys(spec.split for spec in specs):
        data = open_run_split(run, root, split_name)
        evaluation = evaluate_loaded(run, data, [s for s in specs if s.split == split_name], batch_size=batch_size,
                               max_pairs_per_block=max_pairs_per_block, ties=ties,
                               keep_scores=save_scores != "none", progress=progress)
        source = source_of(run, run_dir, root, checkpoint)
        if evaluation.scores is not None:
            path = _write_run_scores(run_dir, data, evaluation.scores, save_scores, source)
            source = {**source, "scores_file": path.name}
        for name, result in evaluation.results.items():
            result.update(source)
            atomic_write_json(eval_path(run_dir, name), result, "evaluation results")
            results[name] = result
            say(eval_line(run_dir, result), progress)
    return {p: results[p] for p in protocols}


def reusable_by_split(specs: Sequence[Protocol], saved: Callable[[Protocol], dict | None]) -> dict[str, dict]:
    """``{protocol: saved(spec)}`` over the splits where ``saved`` returns a result for every protocol (a
    split is evaluated whole, so one missing or stale result means evaluating all of its protocols again)."""
    kept: dict[str, dict] = {}
    for split_name in dict.fromkeys(spec.split for spec in specs):
        found = {spec.name: saved(spec) for spec in specs if spec.split == split_name}
        if all(result is not None for result in found.values()):
            kept.update(found)
    return kept


def is_fresh(record: dict, checkpoint: str, stamp: list[int], data_root: str | Path | None, **same) -> bool:
    """Whether a saved eval result or scores record comes from this checkpoint file (name and stamp) and data
    folder (any folder when ``data_root`` is None), with the values ``same`` of its other keys."""
    return (record.get("checkpoint") == checkpoint and record.get("checkpoint_stamp") == stamp
            and (data_root is None or Path(record.get("data_root", "")).resolve() == Path(data_root).resolve())
            and all(record.get(key) == value for key, value in same.items()))


def _reusable(run_dir: str | Path, spec: Protocol, checkpoint: str, stamp: list[int], root: str | Path,
              ties: str, save_scores: str) -> dict | None:
    """The saved result of ``spec`` when it was computed from this checkpoint file, data folder, split and
    tie rule (and its scores were saved when ``save_scores`` asks for them), else None."""
    path = eval_path(run_dir, spec.name)
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    if not is_fresh(result, checkpoint, stamp, root, split=spec.split, ties=ties):
        return None
    if save_scores != "none":
        try:
            meta = load_scores(run_dir, spec.split)[1]
        except DataError:
            return None
        if not is_fresh(meta, checkpoint, stamp, root, dtype=save_scores):
            return None
    return result


def read_eval(run_dir: str | Path, protocol: str) -> dict:
    """The ``eval-<protocol>.json`` of a run folder (DataError naming the command that writes it when absent)."""
    path = eval_path(run_dir, protocol)
    if not path.is_file():
        raise DataError(f"{path} does not exist: evaluate the run first (python -m itrlib eval --run {run_dir} "
                        f"--protocol {protocol})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} cannot be read as JSON ({exc})") from exc


def eval_line(run_dir: str | Path, result: dict) -> str:
    """One line for a log: run, protocol, images, rSum and R@1 both ways, and where the time went."""
    metrics, timing = result["metrics"], result.get("timing", {})
    times = ", ".join(f"{key.removesuffix('_s')} {value:.2f} s" for key, value in timing.items()
                      if key.endswith("_s") and isinstance(value, int | float))
    folds = len(result.get("folds", []))
    images = f"{result['n_images']} images" + (f", {folds} folds of {result['n_images'] // folds}" if folds > 1 else "")
    return (f"{Path(run_dir).name}: {result['protocol']} on {result['split']} ({images}): "
            f"rSum {metrics['rsum']:.1f}, i2t R@1 {metrics['i2t_r1']:.1f}, t2i R@1 {metrics['t2i_r1']:.1f}"
            + (f" [{times}]" if times else ""))


def trained_split_scores(run_dir: str | Path, split: str, *, data_root: str | None = None,
                         checkpoint: str = "best", device: str = "auto", progress: bool = True):
    """(float32 scores (N_img, N_cap), description) of a trained run on ``split``: the saved
    ``scores-<split>.npy`` when it matches the checkpoint and data, else computed now and saved (float32).

    ``split`` ``dev`` means the run's validation split exactly as training used it (first
    ``data.val_max_images`` images).
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / CHECKPOINTS[checkpoint]
    if checkpoint_path.is_file():  # else load_run says what is missing
        stamp = file_stamp(checkpoint_path)
        try:
            scores, meta = load_scores(run_dir, split)
            if is_fresh(meta, checkpoint, stamp, data_root, dtype="float32"):
                return scores, meta
        except DataError:
            pass
    run = load_run(run_dir, checkpoint=checkpoint, device=device)
    root = data_root or run.config.data.root
    data = open_run_split(run, root, split)
    evaluation = evaluate_loaded(run, data, [whole_split(split)], keep_scores=True, progress=progress)
    _write_run_scores(run_dir, data, evaluation.scores, "float32",
                      source_of(run, run_dir, root, checkpoint))
    return load_scores(run_dir, split)


def evaluate_loaded(run: LoadedRun, data: PrecompSplit, protocols: list[Protocol], *, batch_size: int | None = None,
              max_pairs_per_block: int | None = None, ties: str | None = None, keep_scores: bool = False,
              shortlist: Shortlist | None = None, progress: bool = True) -> SplitEvaluation:
    """:func:`evaluate_split` of a loaded run; unset options come from the run's config."""
    config = run.config
    return evaluate_split(run.model, data, run.tokenizer, protocols,
                          batch_size=batch_size or config.train.eval_batch_size, device=run.device,
                          amp=config.train.amp and run.device.type == "cuda",
                          max_pairs_per_block=max_pairs_per_block or config.eval.max_pairs_per_block,
                          ties=ties or config.eval.ties, keep_scores=keep_scores, shortlist=shortlist,
                          progress=progress)


def source_of(run: LoadedRun, run_dir: str | Path, root: str | Path, checkpoint: str) -> dict:
    """Where a result comes from: run folder, data folder, checkpoint and its epoch, model name."""
    return {"run": str(run_dir), "data_root": str(root), "checkpoint": checkpoint,
            "checkpoint_epoch": run.checkpoint.get("epoch"), "model": run.config.model.name,
            "checkpoint_stamp": file_stamp(Path(run_dir) / CHECKPOINTS[checkpoint])}


def _write_run_scores(run_dir: str | Path, data: PrecompSplit, scores, dtype: str, source: dict) -> Path:
    """Save a split's scores with their source (:func:`_source`: its checkpoint stamp recognises stale scores)."""
    return write_scores(run_dir, data.split, scores, dtype, {**source, "caps_per_image": data.caps_per_image})


def open_run_split(run: LoadedRun, root: str | Path, split: str) -> PrecompSplit:
    """Open ``split`` of ``root`` as the run's data (dev cut like training) and check its feature size."""
    config = run.config
    max_images = config.data.val_max_images if split == config.data.val_split else None
    data = open_split(root, split, max_images=max_images, check_features=config.data.check_features)
    trained = int(run.checkpoint["feature_dim"])
    if data.feature_dim != trained:
        raise ItrlibError(f"{data.images_path} has {data.feature_dim}-d region features, but the run was trained "
                          f"on {trained}-d features (data.root={config.data.root}): evaluate it on data with the "
                          "same features, or pass the right --data-root")
    return data


def training_curves(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(step records, validation records) of a run's ``metrics.jsonl`` as data frames."""
    records = read_jsonl(Path(run_dir) / METRICS_FILE)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return frame, frame
    return (frame[frame["event"] == "step"].reset_index(drop=True),
            frame[frame["event"] == "val"].reset_index(drop=True))
