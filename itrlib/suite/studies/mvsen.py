"""MVSEN studies: Tables 1–3 (both directions, their ensemble, the suite's other models), the Table 4
ablation and the Fig. 2 (GCN layers) and Figs. 3–4 (gamma) sweeps, as sets of runs of ``mvsen_<profile>``.

Each direction is its own run (``mvsen_t2i``: word nodes, ``mvsen_i2t``: region nodes, in the release's
naming); the ensemble "t2i+i2t" is a composite run of the two: alpha = 0.5 (the primary number) and alpha
tuned on the dev split (never on test). Sweeps and the ablation train under :func:`sweep_budget`, a smaller
budget on synthetic data, and are evaluated on F30K 1K only (the protocol of Table 4 and Figs. 2–3).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd

from itrlib.models.mvsen import ABLATION_ROWS, ENSEMBLE_ROWS
from itrlib.runs.composite import create_composite
from itrlib.suite.experiments import Where, train_where
from itrlib.suite.profiles import get_profile, run_config
from itrlib.suite.report.paper import paper_sweep_note
from itrlib.suite.report.plots import plot_sweep
from itrlib.suite.report.results import Results, ours_title, table_caption, variant_table
from itrlib.suite.report.tables import Caption, metrics_frame
from itrlib.suite.studies.sweeps import Sweep, shared_run_name, step_budget

DIRECTIONS = ("t2i", "i2t")
ENSEMBLE = "MVSEN t2i+i2t"
ENSEMBLE_DEV = "MVSEN t2i+i2t (alpha dev)"
SWEEP_PROTOCOL = "f30k1k"
PAPER_METHODS = [("MVSEN", "MVSEN (ours)", "MVSEN t2i+i2t"), ("USER", "USER (SGE)", "USER (SGE)"),
                 ("USER", "VSE∞", "VSE∞"), ("AFA", "Ours", "AFA")]
"""Paper rows of Tables 1–3: ``(paper, method in paper_tables.csv, label)``."""
OTHER_MODELS = (("AFA", "afa", "afa"), ("VSE∞", "vse", "vse"), ("USER (SGE)", "user", "user"))
"""The suite's other models in the comparison: ``(label, method preset, run name)``, the runs of their own
notebooks (reused when finished)."""
ROW_DESCRIPTIONS = {
    "R": "ranking loss only", "R+M": "ranking + text-text matching", "R+C": "ranking + multi-label classification",
    "R+M+C": "all three tasks (the full model)",
}


SWEEP_STEPS = 40
"""Optimiser steps of an embedded ablation/sweep run: about half an epoch (78 steps of 64 pairs)."""


def sweep_budget(profile: str) -> list[str]:
    """Overrides of every ablation/sweep run: under the embedded profile :data:`SWEEP_STEPS` steps of one
    epoch at the initial lr and no ``last.pt`` once finished (16 such runs; a full embedded MVSEN epoch takes
    1.8-2.6 min on 2 CPU cores); real data and the smoke profile keep the preset's budget, so their
    full-model rows are notebook 01's runs (shared)."""
    spec = get_profile(profile)
    if spec.reduced_studies or not spec.synthetic:
        return []
    return step_budget(SWEEP_STEPS)


def sweep_budget_text(profile: str) -> str:
    if sweep_budget(profile):
        batch = run_config("mvsen", profile).train.batch_size
        return (f"Ablation and sweep runs train {SWEEP_STEPS} steps of batch {batch} (about half an epoch) at the "
                "initial lr (notebook 01's runs train the profile's full budget) and "
                f"are evaluated on {SWEEP_PROTOCOL} only")
    return f"Ablation and sweep runs train under the profile's budget and are evaluated on {SWEEP_PROTOCOL} only"


def _run(method: str, profile: str, name: str, changes: Sequence[str], where: Where, sweep: bool
         ) -> dict[str, dict]:
    budget = sweep_budget(profile) if sweep else []
    return train_where(method, profile, name, where, [*budget, *changes], [SWEEP_PROTOCOL] if sweep else None)


def _ensemble(profile: str, name: str, members: Sequence[str], protocols: Sequence[str], where: Where,
              tune: bool = False) -> dict[str, dict]:
    runs = get_profile(profile).runs_dir
    return create_composite(runs / name, [str(runs / m) for m in members], alpha=None if tune else 0.5,
                            tune=tune, protocols=protocols, data_root=where.data_root, progress=where.progress)


# --- Tables 1-3 ------------------------------------------------------------------------------------------


def direction_run(direction: str) -> str:
    return f"mvsen_{direction}"


def run_directions(profile: str, where: Where = Where()) -> Results:
    """Both directions at the profile's headline budget and their two ensembles:
    ``{"MVSEN t2i": ..., "MVSEN i2t": ..., "MVSEN t2i+i2t": alpha 0.5, "MVSEN t2i+i2t (alpha dev)": ...}``."""
    results = {f"MVSEN {d}": _run("mvsen", profile, direction_run(d), [f"model.direction={d}"], where, sweep=False)
               for d in DIRECTIONS}
    protocols = get_profile(profile).protocols
    members = [direction_run(d) for d in DIRECTIONS]
    results[ENSEMBLE] = _ensemble(profile, "mvsen_ensemble", members, protocols, where)
    results[ENSEMBLE_DEV] = _ensemble(profile, "mvsen_ensemble_dev", members, protocols, where, tune=True)
    return results


def run_comparison(profile: str, where: Where = Where()) -> Results:
    """:func:`run_directions` beside AFA, VSE∞ and USER (SGE) under their own presets of the profile (the
    same data, text encoder and epochs)."""
    results = run_directions(profile, where)
    for label, method, name in OTHER_MODELS:
        results[label] = _run(method, profile, name, [], where, sweep=False)
    return results


def ensemble_alpha(results: Results) -> float:
    """The dev-tuned alpha (weight of the t2i member) of :func:`run_directions`' tuned ensemble."""
    first = next(iter(results[ENSEMBLE_DEV].values()))
    return float(first["composite"]["weights"][0])


# --- Table 4 ---------------------------------------------------------------------------------------------


def ablation_run_name(row: str, profile: str) -> str:
    """``mvsen_table4_<n>`` for row ``#<n> ...``; the full-model rows (#10, #11) are the direction runs
    ``mvsen_t2i``/``mvsen_i2t`` of notebook 01 (``..._sweep`` when the profile has a sweep budget)."""
    if len(ABLATION_ROWS.get(row, ())) == 1:  # only the direction switch: the full model
        return shared_run_name(direction_run(row.split()[-1]), sweep_budget(profile))
    return f"mvsen_table4_{row.split()[0].lstrip('#')}"


REDUCED_ABLATION = ("#1 R t2i", "#2 R i2t", "#10 R+M+C t2i", "#11 R+M+C i2t")
"""Rows trained under the smoke profile: the task switches off and on in each direction (the full rows are
notebook 01's runs), and the #3 and #12 ensembles, to keep make test short."""


def ablation_rows(profile: str) -> list[str]:
    return list(REDUCED_ABLATION) if get_profile(profile).reduced_studies else list(ABLATION_ROWS)


def run_ablation(profile: str, where: Where = Where()) -> Results:
    """Table 4 rows under the sweep budget on F30K 1K, each ensemble row (#3/#6/#9/#12) a composite (alpha
    0.5) of its two trained rows: ``{row: {protocol: result}}`` in the table's order."""
    trained = {row: _run("mvsen", profile, ablation_run_name(row, profile), ABLATION_ROWS[row], where, sweep=True)
               for row in ablation_rows(profile)}
    results: Results = {}
    for row in sorted(set(trained) | set(ENSEMBLE_ROWS), key=lambda r: int(r.split()[0].lstrip("#"))):
        if row in trained:
            results[row] = trained[row]
        elif all(member in trained for member in ENSEMBLE_ROWS[row]):
            members = [ablation_run_name(m, profile) for m in ENSEMBLE_ROWS[row]]
            results[row] = _ensemble(profile, ablation_run_name(row, profile), members, [SWEEP_PROTOCOL], where)
    return results


def ablation_table(results: Results, profile: str) -> pd.DataFrame:
    """Table 4: each row of ours beside the paper's row of the same label (F30K 1K)."""
    return variant_table(results, SWEEP_PROTOCOL, "MVSEN", "MVSEN", {row: row for row in results}, data=profile)


def ablation_caption(results: Results, table: pd.DataFrame, profile: str) -> Caption:
    tasks = "; ".join(f"{k}: {v}" for k, v in ROW_DESCRIPTIONS.items())
    rows = (f"{tasks}; t2i = word nodes, i2t = region nodes (the release's naming, as Table 4); t2i+i2t = the "
            f"two runs' scores averaged (alpha 0.5). {sweep_budget_text(profile)}")
    return table_caption(f"MVSEN Table 4 ablation on {SWEEP_PROTOCOL}: itrlib beside the MVSEN paper", results,
                         table, profile, protocols=[SWEEP_PROTOCOL], rows=rows)


# --- Fig. 2 (GCN layers) and Figs. 3-4 (gamma) ------------------------------------------------------------


GCN_SWEEP = Sweep(method="mvsen", field="model.gcn_layers", values=(1, 2, 3, 4, 5), embedded_values=(1, 3, 5),
                  reduced_values=(1, 3), figure="Fig. 2", axis="GCN layers l (residual layers)")
GAMMA_SWEEP = Sweep(method="mvsen", field="model.gamma", values=(0.1, 0.3, 0.5, 0.7, 0.9),
                    embedded_values=(0.1, 0.5, 0.9), reduced_values=(0.1, 0.9), figure="Fig. 3",
                    axis="γ, weight of text-text matching against classification (code: gama)")


def sweep_run_name(sweep: Sweep, direction: str, value: float) -> str:
    return f"mvsen_{direction}_{sweep.field.split('.')[1]}_{value:g}"


def sweep_directions(profile: str) -> tuple[str, ...]:
    """Directions swept: both (each is its own model), only t2i under smoke (make test's time)."""
    return ("t2i",) if get_profile(profile).reduced_studies else DIRECTIONS


def run_sweep(sweep: Sweep, profile: str, where: Where = Where()) -> dict[str, dict[float, dict[str, dict]]]:
    """``{direction: {value: {protocol: result}}}`` under the sweep budget for :func:`sweep_directions`; the
    default value's run is the ablation's full-model row of that direction (shared)."""
    out: dict[str, dict[float, dict[str, dict]]] = {}
    for direction in sweep_directions(profile):
        full_row = next(r for r in ABLATION_ROWS if r.endswith(f"R+M+C {direction}"))
        out[direction] = {}
        for value in sweep.values_for(profile):
            if value == sweep.default(profile):
                name, changes = ablation_run_name(full_row, profile), ABLATION_ROWS[full_row]
            else:
                name = sweep_run_name(sweep, direction, value)
                changes = [*ABLATION_ROWS[full_row], f"{sweep.field}={value:g}"]
            out[direction][value] = _run("mvsen", profile, name, changes, where, sweep=True)
    return out


def sweep_table(sweep: Sweep, results: dict[str, dict[float, dict[str, dict]]]) -> pd.DataFrame:
    """One row per (direction, value): the value, the direction and the F30K 1K metrics."""
    return metrics_frame([{sweep.field: value, "direction": direction, "protocol": protocol, **r["metrics"]}
                          for direction, by_value in results.items() for value, by_protocol in by_value.items()
                          for protocol, r in by_protocol.items()])


def sweep_results(sweep: Sweep, results: dict[str, dict[float, dict[str, dict]]]) -> Results:
    """:func:`run_sweep`'s results flattened to ``{"<direction> <field>=<value>": {protocol: result}}``."""
    return {f"{d} {sweep.field}={v:g}": r for d, by_value in results.items() for v, r in by_value.items()}


def sweep_caption(sweep: Sweep, results: dict[str, dict[float, dict[str, dict]]], table: pd.DataFrame,
                  profile: str) -> Caption:
    labelled = sweep_results(sweep, results)
    note = paper_sweep_note("MVSEN", f"{sweep.figure} (text)") or "the paper prints curves only"
    return table_caption(f"MVSEN {sweep.figure}: rSum against {sweep.axis}", labelled, table, profile,
                         protocols=[SWEEP_PROTOCOL],
                         rows=f"one row per direction and value of {sweep.field}; default "
                              f"{sweep.default(profile):g}. {sweep_budget_text(profile)}",
                         references=f"none: the paper's {sweep.figure} gives no numbers ({note})")


def plot_mvsen_sweep(sweep: Sweep, table: pd.DataFrame, results: dict[str, dict[float, dict[str, dict]]],
                     profile: str) -> plt.Figure:
    """rSum against the swept value, one line per direction, the default marked; the paper's panel says what
    the paper reports (curves without printed numbers)."""
    default = sweep.default(profile)
    labelled = sweep_results(sweep, results)
    return plot_sweep(table, x=sweep.field, y="rSum", hue="direction", xlabel=sweep.axis,
                      title=f"MVSEN {sweep.figure}: rSum against {sweep.axis}", default=default,
                      default_label=f"default {default:g}",
                      ours_title=ours_title(labelled, profile, [SWEEP_PROTOCOL]),
                      paper=pd.DataFrame(columns=["parameter", "value", "protocol"]),
                      paper_title=f"MVSEN paper, {sweep.figure}",
                      paper_note=paper_sweep_note("MVSEN", f"{sweep.figure} (text)"))
