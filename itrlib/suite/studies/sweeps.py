"""A swept config field of one method's presets: the values tried per profile and the paper's figure."""

from __future__ import annotations

from dataclasses import dataclass

from itrlib.suite.profiles import get_profile, run_config


def step_budget(steps: int | None = None, epochs: int = 1) -> list[str]:
    """Overrides of a sweep or ablation run on synthetic data: ``epochs`` epochs (one by default) at the initial
    lr, each cut to ``steps`` optimiser steps when given, and no ``last.pt`` once the run has finished (sweep
    runs are never continued)."""
    return [f"train.epochs={epochs}", "train.lr_decay_epochs=[]", "train.keep_last=false",
            *([f"train.max_steps_per_epoch={steps}"] if steps else [])]


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
