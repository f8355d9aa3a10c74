"""Composite runs: a run folder whose scores are a weighted sum of trained runs' scores (its members).

``S = sum_k w_k S_k`` over the members' float32 score matrices of the same split (MVSEN's two-direction
ensemble; later two-stage retrieval). With two members the weights are ``(alpha, 1 - alpha)``; ``alpha`` is
fixed, or tuned on the dev split (the members' validation split, as training used it) by a grid search
on dev rSum — never on a test split. The folder holds ``composite.json`` (members, weights, how they were
chosen) and ordinary ``eval-<protocol>.json`` files, so tables and reports read it like any other run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from itrlib.config import load_config
from itrlib.engine.checkpoint import BEST
from itrlib.engine.components import CONFIG_FILE
from itrlib.errors import ConfigError, DataError, ItrlibError
from itrlib.evaluation.protocols import get_protocol, whole_split
from itrlib.evaluation.ranking import evaluate_scores
from itrlib.io import atomic_write_json, check_writable
from itrlib.runs.scores import file_stamp
from itrlib.runs.trained import eval_path, trained_split_scores

COMPOSITE_FILE = "composite.json"
DEFAULT_ALPHA_STEP = 0.05


def is_composite(run_dir: str | Path) -> bool:
    return (Path(run_dir) / COMPOSITE_FILE).is_file()


def load_composite(run_dir: str | Path) -> dict:
    path = Path(run_dir) / COMPOSITE_FILE
    if not path.is_file():
        raise ItrlibError(f"{run_dir} is not a composite run (no {COMPOSITE_FILE})")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ItrlibError(f"{path} cannot be read as JSON ({exc})") from exc
    if not isinstance(spec, dict) or not {"members", "weights"} <= spec.keys():
        raise ItrlibError(f"{path} is not a composite definition (a JSON object with members and weights)")
    return spec


def combine(scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``sum_k weights[k] * scores[k]`` in float32; every matrix must have the same shape."""
    shapes = {s.shape for s in scores}
    if len(shapes) != 1:
        raise DataError(f"member score matrices differ in shape: {sorted(shapes)}")
    total = np.zeros(scores[0].shape, dtype=np.float32)
    for matrix, weight in zip(scores, weights, strict=True):
        total += np.float32(weight) * matrix
    return total


def alpha_grid(step: float = DEFAULT_ALPHA_STEP) -> list[float]:
    """0, step, ..., 1 (rounded to 6 decimals so that labels stay exact)."""
    if not 0 < step <= 1:
        raise ConfigError(f"alpha step must be in (0, 1], got {step}")
    count = round(1 / step)
    return [round(i / count, 6) for i in range(count + 1)]


def tune_alpha(dev_scores: Sequence[np.ndarray], step: float = DEFAULT_ALPHA_STEP, ties: str = "pessimistic",
               caps_per_image: int = 5) -> dict:
    """Grid search of ``alpha`` for two members on dev rSum: ``{"alpha", "grid", "dev_rsum"}``.

    The first alpha with the highest dev rSum wins (the grid runs from 0 to 1).
    """
    if len(dev_scores) != 2:
        raise ConfigError(f"tuning alpha needs exactly two members, got {len(dev_scores)}; give fixed weights")
    grid = alpha_grid(step)
    rsums = [evaluate_scores(combine(dev_scores, (a, 1 - a)), whole_split("dev"), caps_per_image=caps_per_image,
                             ties=ties)["metrics"]["rsum"] for a in grid]
    return {"alpha": grid[int(np.argmax(rsums))], "grid": grid, "dev_rsum": rsums}


def create_composite(run_dir: str | Path, members: Sequence[str | Path], *, weights: Sequence[float] | None = None,
                     alpha: float | None = None, tune: bool = False, alpha_step: float = DEFAULT_ALPHA_STEP,
                     protocols: Sequence[str] = (), data_root: str | None = None, device: str = "auto",
                     ties: str = "pessimistic", progress: bool = True) -> dict[str, dict]:
    """Create (or re-evaluate) the composite run ``run_dir`` and evaluate it under ``protocols``.

    Exactly one of ``weights`` (one per member), ``alpha`` (two members: ``alpha, 1 - alpha``) or
    ``tune=True`` (two members: alpha tuned on dev) chooses the weights. Member scores come from their
    saved ``scores-<split>.npy`` when fresh, else each member is evaluated once and its scores saved.
    Returns ``{protocol: eval result}``.
    """
    run_dir = Path(run_dir)
    members = [str(m) for m in members]
    if len(members) < 2:
        raise ConfigError(f"a composite run needs at least two members, got {members}")
    if sum(x is not None for x in (weights, alpha)) + bool(tune) != 1:
        raise ConfigError("give exactly one of weights, alpha or tune")
    if (run_dir / CONFIG_FILE).is_file():
        raise ItrlibError(f"{run_dir} holds a trained run ({CONFIG_FILE}); choose another name for the composite")
    if alpha is not None or tune:
        if len(members) != 2:
            raise ConfigError(f"alpha and tune combine exactly two members, got {len(members)}; give weights")
    if alpha is not None:
        if not 0 <= alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
        weights = (alpha, 1 - alpha)
    if weights is not None:
        _check_weights(weights, members)
    else:
        alpha_grid(alpha_step)  # a bad step fails before the members are scored
    _check_members(run_dir, members, data_root, tuned=tune)
    check_writable(run_dir / COMPOSITE_FILE, "the composite definition")
    tuning = None
    if tune:
        dev = [trained_split_scores(m, load_config(Path(m) / CONFIG_FILE).data.val_split, device=device,
                                progress=progress)[0] for m in members]
        tuning = tune_alpha(dev, alpha_step, ties)
        weights = (tuning["alpha"], 1 - tuning["alpha"])
    spec = {"members": members, "weights": [float(w) for w in weights], "tuned_on": "dev" if tune else None,
            "tuning": tuning, "data_root": data_root, "member_checkpoints": _member_stamps(members)}
    _check_same_definition(run_dir, spec)
    atomic_write_json(run_dir / COMPOSITE_FILE, spec, "the composite definition")
    return evaluate_composite(run_dir, protocols, data_root=data_root, device=device, ties=ties, progress=progress)


def _check_weights(weights: Sequence[float], members: Sequence[str]) -> None:
    if len(weights) != len(members):
        raise ConfigError(f"{len(weights)} weights for {len(members)} members")
    if not all(math.isfinite(w) for w in weights):
        raise ConfigError(f"weights must be finite numbers, got {list(weights)}")


def _check_members(run_dir: str | Path, members: Sequence[str], data_root: str | None, tuned: bool = False) -> None:
    """Raise ItrlibError unless every member is a trained run folder with a ``best.pt``, other than ``run_dir``;
    without ``data_root`` the members must share their ``data.root``, and ``tuned`` (alpha tuned on dev) needs
    members with the same dev split. Nothing is read but configs."""
    configs = {}
    for member in members:
        folder = Path(member)
        if not folder.is_dir():
            state = "is a file, not a run folder" if folder.exists() else "does not exist"
            raise ItrlibError(f"composite member {member} {state}")
        if folder.resolve() == Path(run_dir).resolve():
            raise ItrlibError(f"composite member {member} is the composite run itself")
        if not (folder / CONFIG_FILE).is_file():
            kind = "a composite run: members are trained runs" if is_composite(folder) else (
                f"not a run folder (no {CONFIG_FILE})")
            raise ItrlibError(f"composite member {member} is {kind}")
        if not (folder / BEST).is_file():
            raise ItrlibError(f"composite member {member} has no trained checkpoint {folder / BEST}: train it "
                              "(at least one epoch) first")
        configs[member] = load_config(folder / CONFIG_FILE)
    if data_root is None:
        _check_same(configs, "data folders (data.root)", lambda c: str(Path(c.data.root).resolve()),
                    "pass data_root (--data-root) to score every member on the same data")
    if tuned:
        _check_same(configs, "dev splits (data.val_split, data.val_max_images)",
                    lambda c: (c.data.val_split, c.data.val_max_images), "give fixed weights or alpha instead")


def _check_same(configs: dict, what: str, value: Callable, hint: str) -> None:
    """Raise DataError when the members' ``value(config)`` differ."""
    values = {member: value(config) for member, config in configs.items()}
    if len(set(values.values())) > 1:
        listed = ", ".join(f"{member}: {found}" for member, found in values.items())
        raise DataError(f"composite members have different {what} ({listed}); {hint}")


def evaluate_composite(run_dir: str | Path, protocols: Sequence[str], *, data_root: str | None = None,
                       device: str = "auto", ties: str | None = None, progress: bool = True) -> dict[str, dict]:
    """Evaluate a composite run under ``protocols``; writes ``eval-<protocol>.json`` atomically."""
    spec = load_composite(run_dir)
    root = data_root or spec.get("data_root")
    ties = ties or "pessimistic"
    if protocols:  # before the members are scored
        check_writable(eval_path(run_dir, protocols[0]), "evaluation results")
    by_split: dict[str, tuple[np.ndarray, str, int, list]] = {}
    results = {}
    for name in protocols:
        protocol = get_protocol(name)
        if protocol.split not in by_split:  # coco1k and coco5k share the members' testall scores
            by_split[protocol.split] = _combined_scores(run_dir, spec, protocol.split, root, device, progress)
        scores, data_root, caps_per_image, epochs = by_split[protocol.split]
        result = evaluate_scores(scores, protocol, caps_per_image=caps_per_image, ties=ties)
        result.update({"run": str(run_dir), "model": "composite", "data_root": data_root,
                       "composite": {"members": spec["members"], "weights": spec["weights"],
                                     "tuned_on": spec["tuned_on"], "member_checkpoint_epochs": epochs}})
        atomic_write_json(eval_path(run_dir, name), result, "evaluation results")
        results[name] = result
    return results


def composite_split_scores(run_dir: str | Path, split: str, *, data_root: str | None = None, device: str = "auto",
                           progress: bool = True) -> tuple[np.ndarray, dict]:
    """(float32 (N_img, N_cap) weighted sum of the members' scores on ``split``, description with
    ``data_root``, ``caps_per_image``, ``members``, ``weights`` and ``member_checkpoint_epochs``)."""
    spec = load_composite(run_dir)
    scores, root, caps_per_image, epochs = _combined_scores(run_dir, spec, split, data_root or spec.get("data_root"),
                                                            device, progress)
    return scores, {"run": str(run_dir), "split": split, "data_root": root, "caps_per_image": caps_per_image,
                    "members": spec["members"], "weights": spec["weights"], "member_checkpoint_epochs": epochs}


def _combined_scores(run_dir: str | Path, spec: dict, split: str, root: str | None, device: str, progress: bool
                     ) -> tuple[np.ndarray, str, int, list]:
    """(weighted sum of the members' scores on ``split``, data folder, captions per image, member epochs)."""
    _check_members(run_dir, spec["members"], root)
    loaded = [trained_split_scores(m, split, data_root=root, device=device, progress=progress)
              for m in spec["members"]]
    roots = {str(Path(meta["data_root"]).resolve()) for _, meta in loaded}
    if len(roots) != 1:
        raise DataError(f"composite {run_dir}: members were scored on different data folders {sorted(roots)};"
                        " pass data_root")
    return (combine([s for s, _ in loaded], spec["weights"]), roots.pop(), int(loaded[0][1]["caps_per_image"]),
            [meta.get("checkpoint_epoch") for _, meta in loaded])


def _member_stamps(members: Sequence[str]) -> list[list[int] | None]:
    """Stamp of each member's ``best.pt`` (None when absent): a retrained member changes it."""
    return [file_stamp(Path(m) / BEST) if (Path(m) / BEST).is_file() else None for m in members]


def _check_same_definition(run_dir: Path, spec: dict) -> None:
    """A composite folder belongs to one definition: refuse to overwrite another one, unless a member was
    retrained since it was written (its weights tuned on dev then change with the members)."""
    if not is_composite(run_dir):
        return
    old = load_composite(run_dir)
    if old.get("members") == spec["members"] and old.get("member_checkpoints") != spec["member_checkpoints"]:
        return
    keys = ("members", "weights", "tuned_on")
    if any(old.get(k) != spec.get(k) for k in keys):
        raise ItrlibError(f"{run_dir} already holds a composite of {old['members']} with weights {old['weights']}; "
                          "choose another name or delete the folder")
