"""A swept config field of one method's presets: the values tried per profile and the paper's figure."""

from __future__ import annotations

from dataclasses import dataclass

from itrlib.suite.profiles import get_profile, run_config

ONE_EPOCH_BUDGET = ["train.epochs=1", "train.lr_decay_epochs=[]", "train.keep_last=false"]
"""Overrides of sweep and ablation runs on synthetic data: one epoch at the initial lr, and no ``last.pt``
once the run has finished (sweep runs are never continued)."""


def step_budget(steps: int | None = None) -> list[str]:
    """:data:`ONE_EPOCH_BUDGET`, its epoch cut to ``steps`` optimiser steps when given."""
    return [*ONE_EPOCH_BUDGET, *([f"train.max_steps_per_epoch={steps}"] if steps else [])]


def shared_run_name(headline: str, budget: list[str]) -> str:
    """A study's run of the model at its defaults: the headline run ``headline`` of notebook 01 when the
    study trains no budget of its own, else ``<headline>_sweep`` (so a headline run is never overwritten or
    reused under another budget)."""
    return f"{headline}_sweep" if budget else headline


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """One swept ``section.name`` field of the ``<method>_<profile>`` presets."""

    method: str
    field: str
    values: tuple[float, ...]
    """Values on real data: the paper's where it prints them, else around the default."""
    embedded_values: tuple[float, ...]
    """Values under the embedded profile: fewer of them, to keep the sweeps' wall time down."""
    reduced_values: tuple[float, ...]
    """Values under a profile with ``reduced_studies`` (smoke)."""
    figure: str
    axis: str
    """Axis label of the figure."""
    parameter: str = ""
    """Variant prefix in ``paper_tables.csv`` (``queue`` of ``queue=512``) or the sweep's paper name."""

    def default(self, profile: str) -> float:
        """The field's value in the ``<method>_<profile>`` preset (e.g. USER's queue: 2048 embedded, 128 smoke)."""
        section, name = self.field.split(".")
        return getattr(getattr(run_config(self.method, profile), section), name)

    def values_for(self, profile: str) -> tuple[float, ...]:
        spec = get_profile(profile)
        if spec.reduced_studies:
            return self.reduced_values
        return self.embedded_values if spec.synthetic else self.values
