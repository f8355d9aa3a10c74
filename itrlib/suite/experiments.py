"""Train-and-evaluate recipes the notebooks and studies call, and :class:`Where` their runs read from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from itrlib.engine.trainer import train
from itrlib.runs.trained import evaluate_trained
from itrlib.suite import profiles


@dataclass(frozen=True)
class Where:
    """Where the runs of a notebook or study read their data and text weights (``None``: the preset's), the
    extra config overrides of every run, and whether they show progress. Every study takes one."""

    data_root: str | None = None
    bert_path: str | None = None
    overrides: tuple[str, ...] = ()
    progress: bool = True


def train_where(method: str, profile: str, name: str, where: Where, changes: Sequence[str] = (),
                protocols: Sequence[str] | None = None) -> dict[str, dict]:
    """:func:`train_and_evaluate` of run ``name`` with ``where`` and the run's own ``changes`` (after
    ``where.overrides``)."""
    return train_and_evaluate(method, profile, name=name, data_root=where.data_root, bert_path=where.bert_path,
                              overrides=[*where.overrides, *changes], protocols=protocols, progress=where.progress)


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
