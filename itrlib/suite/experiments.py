"""Train-and-evaluate recipes the notebooks call: one run, or a set of named variants of one preset."""

from __future__ import annotations

from collections.abc import Sequence

from itrlib.engine.trainer import train
from itrlib.runs.trained import evaluate_trained
from itrlib.suite import profiles


def train_and_evaluate(method: str, profile: str, *, name: str, data_root: str | None = None,
                       bert_path: str | None = None, overrides: list[str] | None = None,
                       protocols: Sequence[str] | None = None, progress: bool = True) -> dict[str, dict]:
    """Train ``<method>_<profile>`` as run ``name`` (resuming or reusing a finished run with the same
    config) and evaluate it under ``protocols`` (default: every protocol of the profile; an evaluation of
    the same checkpoint file, data and tie rule is read back, see ``evaluate_trained(reuse=True)``):
    ``{protocol: eval result}``. ``data_root``/``bert_path`` replace the preset's data folder and
    text-encoder weights."""
    config = profiles.run_config(method, profile, name=name, data_root=data_root, bert_path=bert_path,
                                 overrides=overrides)
    profiles.ensure_data(config, profile, progress=progress)
    profiles.prepare_run_dir(config, profile)
    train(config, progress=progress)
    chosen = profiles.get_profile(profile).protocols if protocols is None else tuple(protocols)
    return evaluate_trained(config.run_dir, chosen, progress=progress, reuse=True)


def train_variants(method: str, profile: str, variants: dict[str, list[str]], *, data_root: str | None = None,
                   bert_path: str | None = None, overrides: list[str] | None = None,
                   protocols: Sequence[str] | None = None, progress: bool = True) -> dict[str, dict[str, dict]]:
    """``{variant name: {protocol: eval result}}``; each variant is a run named after it with its overrides."""
    return {name: train_and_evaluate(method, profile, name=name, data_root=data_root, bert_path=bert_path,
                                     overrides=[*(overrides or []), *changes], protocols=protocols,
                                     progress=progress)
            for name, changes in variants.items()}
