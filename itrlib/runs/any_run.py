"""A run folder of either kind: the one place that decides "trained run or composite" and calls the right one.

The CLI, the notebooks and the reports go through these functions; :mod:`itrlib.runs.trained` and
:mod:`itrlib.runs.composite` each handle their own kind only (a composite's members are trained runs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from itrlib.data.precomp import find_precomp_dir, open_split
from itrlib.engine.checkpoint import BEST
from itrlib.engine.components import load_run, load_run_config
from itrlib.errors import ItrlibError
from itrlib.evaluation.eccv import coco_caption_ids, eccv_metrics, package_metrics
from itrlib.evaluation.evaluate import Shortlist
from itrlib.evaluation.protocols import get_protocol
from itrlib.io import atomic_write_json, check_writable
from itrlib.progress import say
from itrlib.runs.composite import (
    COMPOSITE_FILE,
    composite_split_scores,
    evaluate_composite,
    is_composite,
    load_composite,
)
from itrlib.runs.scores import file_stamp
from itrlib.runs.trained import (
    eval_line,
    evaluate_loaded,
    evaluate_trained,
    is_fresh,
    open_run_split,
    reusable_by_split,
    source_of,
    trained_split_scores,
)

TWO_STAGE_FILE = "two-stage-{protocol}-{shortlist_run}-m{size}.json"
"""A two-stage evaluation in the reranking run's folder (not ``eval-*``: that is the run's own ranking)."""
ECCV_SPLIT = "testall"
"""The COCO 5K test split: the images and captions ECCV Caption and CxC extend."""
ECCV_FILE = "eccv-testall.json"


def evaluate_run_protocols(run_dir: str | Path, protocols: Sequence[str], *, data_root: str | None = None,
                           device: str = "auto", ties: str | None = None, progress: bool = True,
                           **trained_options) -> dict[str, dict]:
    """``{protocol: eval result}`` of a run folder, each written to ``eval-<protocol>.json``.

    A trained run: :func:`~itrlib.runs.trained.evaluate_trained` (``trained_options``: split, checkpoint,
    batch_size, save_scores, max_pairs_per_block, reuse; None means its default). A composite: its members'
    scores combined (:func:`~itrlib.runs.composite.evaluate_composite`); a trained-run option given for it is
    an ItrlibError.
    """
    given = {key: value for key, value in trained_options.items() if value is not None and value is not False}
    if is_composite(run_dir):
        if given:
            options = ", ".join(f"{key}={value!r}" for key, value in given.items())
            raise ItrlibError(f"{run_dir} is a composite run: {options} only apply to trained runs (its members "
                              "are evaluated from their best.pt)")
        return evaluate_composite(run_dir, protocols, data_root=data_root, device=device, ties=ties,
                                  progress=progress)
    return evaluate_trained(run_dir, protocols, data_root=data_root, device=device, ties=ties, progress=progress,
                            **given)


def evaluate_run(run_dir: str | Path, protocol: str, **options) -> dict:
    """Eval result of a run folder under one protocol (options: :func:`evaluate_run_protocols`)."""
    return evaluate_run_protocols(run_dir, [protocol], **options)[protocol]


def run_split_scores(run_dir: str | Path, split: str, *, data_root: str | None = None, device: str = "auto",
                     progress: bool = True) -> tuple[np.ndarray, dict]:
    """(float32 scores (N_img, N_cap), description) of a run folder on ``split``: a trained run's (saved, or
    computed and saved) or a composite's weighted sum of its members'."""
    if is_composite(run_dir):
        return composite_split_scores(run_dir, split, data_root=data_root, device=device, progress=progress)
    return trained_split_scores(run_dir, split, data_root=data_root, device=device, progress=progress)


def evaluate_two_stage(run_dir: str | Path, protocols: Sequence[str], *, rerank_with: str | Path, shortlist: int,
                       data_root: str | None = None, device: str = "auto", ties: str | None = None,
                       progress: bool = True, reuse: bool = False) -> dict[str, dict]:
    """Two-stage retrieval (:mod:`itrlib.evaluation.two_stage`): the run ``rerank_with`` (trained or composite)
    shortlists ``shortlist`` items per query from its scores of each protocol's split (saved, or computed and
    saved), and the trained run ``run_dir`` reranks them. Each result, with ``shortlist_run``, ``shortlist``
    and ``shortlist_stamp`` (the shortlist run's ``best.pt`` or ``composite.json``), is written to
    ``two-stage-<protocol>-<shortlist run>-m<shortlist>.json`` in ``run_dir``.

    ``reuse``: a split whose protocols all have a result of the same ``best.pt``, data folder, tie rule,
    shortlist run, shortlist stamp and size is read back instead of evaluated again."""
    if is_composite(run_dir):
        raise ItrlibError(f"{run_dir} is a composite run: it has no model to rerank with (pass a trained run)")
    if shortlist < 1:
        raise ItrlibError(f"--shortlist must be at least 1, got {shortlist}")
    name = Path(rerank_with).name
    outputs = {p: Path(run_dir) / TWO_STAGE_FILE.format(protocol=p, shortlist_run=name, size=shortlist)
               for p in protocols}
    if outputs:
        check_writable(next(iter(outputs.values())), "two-stage results")
    config = load_run_config(run_dir)
    root, ties = data_root or config.data.root, ties or config.eval.ties
    specs = [get_protocol(p) for p in dict.fromkeys(protocols)]
    same = {"shortlist_run": str(rerank_with), "shortlist": shortlist, "shortlist_stamp": _stamp_of(rerank_with)}
    results = _fresh_two_stage(outputs, specs, _stamp_of(run_dir), root, ties, same) if reuse else {}
    for result in results.values():
        say(eval_line(run_dir, result) + f" (two-stage: top {shortlist} of {name}; reused)", progress)
    specs = [spec for spec in specs if spec.name not in results]
    run = load_run(run_dir, device=device) if specs else None
    for split_name in dict.fromkeys(spec.split for spec in specs):
        data = open_run_split(run, root, split_name)
        scores, _ = run_split_scores(rerank_with, split_name, data_root=root, device=device, progress=progress)
        if scores.shape != (data.n_images, data.n_captions):
            raise ItrlibError(f"{rerank_with} scores {split_name} as {scores.shape}, but {root} holds "
                              f"{data.n_images} images and {data.n_captions} captions: evaluate both runs on the "
                              "same data (--data-root)")
        evaluation = evaluate_loaded(run, data, [s for s in specs if s.split == split_name], ties=ties,
                                     shortlist=Shortlist(torch.from_numpy(np.asarray(scores)), shortlist),
                                     progress=progress)
        source = {**source_of(run, run_dir, root, "best"), **same}
        for protocol, result in evaluation.results.items():
            result.update(source)
            atomic_write_json(outputs[protocol], result, "two-stage results")
            results[protocol] = result
            say(eval_line(run_dir, result) + f" (two-stage: top {shortlist} of {name})", progress)
    return {p: results[p] for p in protocols}


def _fresh_two_stage(outputs: dict[str, Path], specs: Sequence, stamp: list[int], root: str, ties: str,
                     same: dict) -> dict[str, dict]:
    """The saved two-stage results of the splits whose protocols all have a fresh one (:func:`is_fresh`)."""

    def fresh(spec) -> dict | None:
        result = _saved_result(outputs[spec.name])
        return result if result is not None and is_fresh(result, "best", stamp, root, split=spec.split, ties=ties,
                                                           **same) else None

    return reusable_by_split(specs, fresh)


def _stamp_of(run_dir: str | Path) -> list[int] | None:
    """:func:`file_stamp` of what defines a run's scores (``best.pt``, or a composite's ``composite.json``);
    None when absent (loading the run then says what is wrong)."""
    path = Path(run_dir) / (COMPOSITE_FILE if is_composite(run_dir) else BEST)
    return file_stamp(path) if path.is_file() else None


def _saved_result(path: Path) -> dict | None:
    """A saved result, or None when it is absent or unreadable (it is then computed again)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def run_data_root(run_dir: str | Path) -> str:
    """The precomp folder a run folder is evaluated on by default: a trained run's ``data.root``; a composite's
    own ``data_root``, else its first member's (members share one when the composite has none)."""
    if is_composite(run_dir):
        spec = load_composite(run_dir)
        return spec.get("data_root") or load_run_config(spec["members"][0]).data.root
    return load_run_config(run_dir).data.root


def run_eccv_metrics(run_dir: str | Path, *, data_root: str | None = None, device: str = "auto",
                     progress: bool = True) -> dict[str, dict[str, float]]:
    """ECCV Caption mAP@R, R-Precision, R@1 and CxC R@1/5/10 (percent, i2t and t2i) of a run folder on the COCO 5K
    test split, its images matched to COCO through ``testall_ids.txt``
    (:func:`~itrlib.evaluation.eccv.eccv_metrics`); written to ``eccv-testall.json`` in the run folder. The
    package, the output file and the ids are checked before anything is scored."""
    metrics = package_metrics()
    out = Path(run_dir) / ECCV_FILE
    check_writable(out, "ECCV Caption results")
    root = data_root or run_data_root(run_dir)
    ids_file = str(find_precomp_dir(root) / f"{ECCV_SPLIT}_ids.txt")
    image_ids = open_split(root, ECCV_SPLIT, check_features="none").image_ids
    coco_caption_ids(image_ids, metrics, ids_file)
    scores, _ = run_split_scores(run_dir, ECCV_SPLIT, data_root=data_root, device=device, progress=progress)
    found = eccv_metrics(scores, image_ids, metrics=metrics, source=ids_file)
    atomic_write_json(out, {"split": ECCV_SPLIT, "data_root": str(root), "metrics": found}, "ECCV Caption results")
    return found
