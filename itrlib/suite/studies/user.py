"""USER studies: Tables I–III (USER beside the suite's VSE∞ and AFA), the Table IV ablation, the Table V
queue / batch sweeps and the Fig. 4–5 sensitivity sweeps, as sets of runs of ``user_<profile>``.

The full model (SGE, both queues, UTO) is the run ``user`` of notebook 01 and Table IV's row I is the
suite's VSE∞ run ``vse``, so the notebooks share them instead of training them again. The sweeps
(Table IV–V, Figs. 4–5) train under :func:`sweep_budget`, a smaller budget than the headline run under the
embedded profile, evaluated on F30K 1K only (the protocol of the paper's Table IV, Table V's F30K half and
Figs. 4–5); the tables say so in their captions.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch

from itrlib.engine.components import load_run
from itrlib.models.user import ABLATION_ROWS
from itrlib.suite.experiments import Where, train_where
from itrlib.suite.inference_time import TEST_SIZES, inference_time_table
from itrlib.suite.profiles import get_profile
from itrlib.suite.report.paper import load_reference, paper_row, paper_sweep, paper_sweep_note, paper_training
from itrlib.suite.report.plots import plot_ours_beside_paper, plot_sweep
from itrlib.suite.report.results import Results, data_kind, ours_title, paper_title, table_caption, variant_table
from itrlib.suite.report.tables import Caption, metrics_frame
from itrlib.suite.studies.sweeps import Sweep, shared_run_name, step_budget

FULL_RUN = "user"
CGE_RUN = "user_cge"
CGE_OVERRIDES = ["model.enhancement=cge"]
BASELINE_ROW = "I baseline-triplet"
FULL_ROW = "VII DVQ+DTQ+GSE+UTO"
SWEEP_PROTOCOL = "f30k1k"
"""Protocol of the sweeps: the paper's Table IV, Table V (F30K half) and Figs. 4–5 are on F30K 1K."""
ROW_DESCRIPTIONS: dict[str, str] = {
    BASELINE_ROW: "(I) VSE∞ with the VSE++ triplet loss (the suite's baseline run)",
    "II UTO": "(II) UTO's mini-batch term only: no enhancement, no queues",
    "III DVQ+UTO": "(III) + the visual queue (caption queries against image keys)",
    "IV DTQ+UTO": "(IV) + the textual queue only (image queries against caption keys)",
    "V GSE+UTO": "(V) + SGE, no queues",
    "VI DVQ+DTQ+UTO": "(VI) both queues, no enhancement",
    FULL_ROW: "(VII) SGE + both queues + UTO = full USER",
}


QUEUE_SWEEP = Sweep(method="user", field="model.queue_size", values=(512, 1024, 2048, 4096),
                    embedded_values=(512, 2048, 4096), reduced_values=(64, 128),
                    figure="Table V", axis="queue size Q (keys per queue)", parameter="queue")
BATCH_SWEEP = Sweep(method="user", field="train.batch_size", values=(32, 64, 128, 256),
                    embedded_values=(64, 128, 256), reduced_values=(32, 64),
                    figure="Table V", axis="mini-batch size", parameter="batch")
GAMMA_SWEEP = Sweep(method="user", field="model.gamma", values=(30, 60, 90, 120, 150),
                    embedded_values=(45, 90, 135), reduced_values=(45, 90),
                    figure="Fig. 4", axis="γ, UTO temperature scale (code: mu)", parameter="gamma")
MARGIN_SWEEP = Sweep(method="user", field="model.margin", values=(0.3, 0.4, 0.5, 0.6, 0.7),
                     embedded_values=(0.3, 0.5, 0.7), reduced_values=(0.3, 0.5),
                     figure="Fig. 4", axis="ε, UTO margin (code: gama)", parameter="epsilon")
LAMBDA_SWEEP = Sweep(method="user", field="model.mini_batch_weight", values=(0.1, 1, 10, 20, 50),
                     embedded_values=(0.1, 1, 20, 50), reduced_values=(1, 20),
                     figure="Fig. 5", axis="λ, weight of the mini-batch term (code: loss_lamda)", parameter="lambda")


def sweep_budget(profile: str) -> list[str]:
    """Overrides of every sweep run: on synthetic data 1 epoch at the initial lr (a USER epoch of the
    embedded data takes about 2 min 20 s on 2 CPU cores, and the sweeps train 17 USER runs; smoke likewise,
    to keep ``make test`` short) and no ``last.pt`` once a run has finished (a USER ``last.pt`` of the
    embedded profile is 580 MB; the sweep runs are never continued); real data keeps the paper's budget and
    the preset's ``keep_last`` (a sweep there may reuse the headline run, whose ``last.pt`` stays)."""
    spec = get_profile(profile)
    return step_budget(spec.study_steps) if spec.synthetic else []


def sweep_budget_text(profile: str) -> str:
    """The sweep budget in words, for captions."""
    if sweep_budget(profile):
        study_steps = get_profile(profile).study_steps
        steps = f" ({study_steps} steps)" if study_steps else ""
        return (f"Sweep runs train 1 epoch{steps} at the initial lr (the headline runs of notebook 01 train the "
                f"profile's full budget), and are evaluated on {SWEEP_PROTOCOL} only")
    return f"Sweep runs train under the profile's budget and are evaluated on {SWEEP_PROTOCOL} only"


def _run(method: str, profile: str, name: str, changes: list[str], where: Where, sweep: bool) -> dict[str, dict]:
    budget = sweep_budget(profile) if sweep else []
    return train_where(method, profile, name, where, [*budget, *changes], [SWEEP_PROTOCOL] if sweep else None)


# --- Tables I-III ---------------------------------------------------------------------------------------


def run_comparison(profile: str, where: Where = Where()) -> dict[str, dict[str, dict]]:
    """USER (SGE), USER (CGE), AFA and VSE∞ under the profile's headline budget: ``{label: {protocol: result}}``.
    The AFA and VSE∞ runs are those of the AFA notebooks and ``00_vse`` (reused when finished)."""
    return {"USER (SGE)": _run("user", profile, FULL_RUN, [], where, sweep=False),
            "USER (CGE)": _run("user", profile, CGE_RUN, CGE_OVERRIDES, where, sweep=False),
            "AFA": _run("afa", profile, "afa", [], where, sweep=False),
            "VSE∞": _run("vse", profile, "vse", [], where, sweep=False)}


PAPER_METHODS = [("USER", "USER (SGE)", "USER (SGE)"), ("USER", "USER (CGE)", "USER (CGE)"),
                 ("USER", "VSE∞", "VSE∞"), ("AFA", "Ours", "AFA")]
"""Paper rows of Tables I–III: ``(paper, method in paper_tables.csv, label)``."""


# --- Table IV --------------------------------------------------------------------------------------------


def default_run_name(method: str, profile: str) -> str:
    """The run of ``method`` at its defaults under the sweep budget: the headline run (``user``, ``vse``)
    when the profile's sweeps keep the headline budget, else ``<run>_sweep``."""
    name = FULL_RUN if method == "user" else "vse"
    return shared_run_name(name, sweep_budget(profile))


def ablation_run_name(row: str, profile: str) -> str:
    """Run of a Table IV row: rows I and VII are the default ``vse`` / ``user`` runs under the sweep
    budget (:func:`default_run_name`), the others ``user_table4_<roman>``."""
    if row == BASELINE_ROW:
        return default_run_name("vse", profile)
    return default_run_name("user", profile) if not ABLATION_ROWS[row] else f"user_table4_{row.split()[0]}"


REDUCED_ROWS = (BASELINE_ROW, "II UTO", "IV DTQ+UTO", FULL_ROW)
"""Table IV rows trained under a profile with ``reduced_studies`` (smoke): every switch flips at least once (no
enhancement, no queue, one queue without the other), at half the cost of all seven."""


def ablation_rows(profile: str) -> list[str]:
    """Table IV rows trained under ``profile``: all seven, or :data:`REDUCED_ROWS` (``reduced_studies``)."""
    return list(REDUCED_ROWS) if get_profile(profile).reduced_studies else [BASELINE_ROW, *ABLATION_ROWS]


def run_ablation(profile: str, where: Where = Where()) -> dict[str, dict[str, dict]]:
    """Table IV rows (:func:`ablation_rows`) under the sweep budget: ``{row: {protocol: eval result}}``."""
    return {row: _run("vse" if row == BASELINE_ROW else "user", profile, ablation_run_name(row, profile),
                      ABLATION_ROWS.get(row, []), where, sweep=True)
            for row in ablation_rows(profile)}


def ablation_rows_text(rows: list[str] | None = None) -> str:
    """What rows I–VII (or ``rows``) are, for a caption or a figure note."""
    return "; ".join(ROW_DESCRIPTIONS[row] for row in rows or ROW_DESCRIPTIONS)


def ablation_table(results: Results, profile: str) -> pd.DataFrame:
    """Table IV: each row of ours beside the paper's row of the same label (F30K 1K)."""
    return variant_table(results, SWEEP_PROTOCOL, "USER", "USER", {row: row for row in results}, data=profile)


def ablation_caption(results: Results, table: pd.DataFrame, profile: str) -> Caption:
    return table_caption(f"USER Table IV ablation on {SWEEP_PROTOCOL}: itrlib beside the USER paper", results, table,
                         profile, protocols=[SWEEP_PROTOCOL],
                         rows=f"{ablation_rows_text(list(results))}. {sweep_budget_text(profile)}")


def plot_ablation(table: pd.DataFrame, results: Results, profile: str) -> plt.Figure:
    """Table IV rSum per row: ours and the paper's in separate panels."""
    return plot_ours_beside_paper(table, metric="rSum", group="variant", hue="source",
                                  ours_title=ours_title(results, profile, [SWEEP_PROTOCOL]),
                                  paper_title=paper_title(table, [SWEEP_PROTOCOL]),
                                  title=f"USER Table IV rows: rSum on {SWEEP_PROTOCOL}",
                                  note=ablation_rows_text(list(results)))


# --- sweeps: Table V, Figs. 4-5 --------------------------------------------------------------------------


def sweep_run_name(sweep: Sweep, value: float) -> str:
    """``user_<field>_<value>``, e.g. ``user_queue_size_512``."""
    return f"user_{sweep.field.split('.')[1]}_{value:g}"


def run_sweep(sweep: Sweep, profile: str, where: Where = Where()) -> dict[float, dict[str, dict]]:
    """One run per value of ``sweep`` (the default value included) under the sweep budget:
    ``{value: {protocol: eval result}}``. Runs at a sweep's default value are shared between sweeps."""
    results = {}
    for value in sweep.values_for(profile):
        is_default = value == sweep.default(profile)
        name = default_run_name("user", profile) if is_default else sweep_run_name(sweep, value)
        results[value] = _run("user", profile, name, [] if is_default else [f"{sweep.field}={value:g}"], where,
                              sweep=True)
    return results


def sweep_table(sweep: Sweep, results: dict[float, dict[str, dict]]) -> pd.DataFrame:
    """One row per swept value: the value (column named after the field) and the metrics on F30K 1K."""
    return metrics_frame([{sweep.field: value, "protocol": protocol, **result["metrics"]}
                          for value, by_protocol in results.items() for protocol, result in by_protocol.items()])


def paper_points(sweep: Sweep) -> pd.DataFrame:
    """The paper's points of the sweep on F30K (``paper_tables.csv``): Table V's rows; empty for Figs. 4–5,
    whose values the paper does not print."""
    points = paper_sweep("USER", sweep.figure, sweep.parameter)
    return points[points["dataset"] == "f30k"] if not points.empty else points


def _labelled(sweep: Sweep, results: dict[float, dict[str, dict]]) -> Results:
    return {f"{sweep.field}={value:g}": by_protocol for value, by_protocol in results.items()}


def sweep_caption(sweep: Sweep, results: dict[float, dict[str, dict]], table: pd.DataFrame, profile: str) -> Caption:
    points = paper_points(sweep)
    if points.empty:
        references = (f"none: the USER paper's {sweep.figure} gives no values "
                      f"({paper_sweep_note('USER', sweep.figure) or 'only the curve'})")
    else:
        references = f"the USER paper's {sweep.figure} (F30K 1K): " + ", ".join(
            f"{sweep.parameter}={p:g}: {v:.1f}" for p, v in zip(points["parameter"], points["value"], strict=True))
    rows = (f"one row per value of {sweep.field} ({sweep.axis}); default {sweep.default(profile):g}. "
            f"{sweep_budget_text(profile)}")
    return table_caption(f"USER {sweep.figure}: rSum against {sweep.axis}", _labelled(sweep, results), table,
                         profile, protocols=[SWEEP_PROTOCOL], rows=rows, references=references)


def plot_user_sweep(sweep: Sweep, table: pd.DataFrame, results: dict[float, dict[str, dict]],
                    profile: str) -> plt.Figure:
    """rSum against the swept value (ours), the default marked, the paper's points in their own panel."""
    default = sweep.default(profile)
    return plot_sweep(table, x=sweep.field, y="rSum", xlabel=sweep.axis,
                      title=f"USER {sweep.figure}: rSum against {sweep.axis}", default=default,
                      default_label=f"default {default:g}",
                      ours_title=ours_title(_labelled(sweep, results), profile, [SWEEP_PROTOCOL]),
                      paper=paper_points(sweep),
                      paper_title=f"USER paper, {sweep.figure} — real Flickr30K 1K, {paper_training('USER')}",
                      paper_note=paper_sweep_note("USER", sweep.figure))


# --- Fig. 6: inference time -----------------------------------------------------------------------------

TIMING_PROTOCOLS = ("f30k1k", "coco5k")
"""Sizes timed for Fig. 6. A COCO 1K fold has the F30K 1K sizes (1,000 images, 5,000 captions), so the
f30k1k row is also the time of one COCO 1K fold (the paper's COCO 1K time covers 5 such folds)."""
REDUCED_TIMING_SIZES = {"f30k1k": (50, 250), "coco5k": (100, 500)}
"""Sizes under a profile with ``reduced_studies`` (smoke: the code path, not a measurement worth reading)."""


def timing_sizes(profile: str) -> dict[str, tuple[int, int]]:
    """``{protocol: (images, captions)}`` timed under ``profile``: the real test sizes, or the reduced ones."""
    if get_profile(profile).reduced_studies:
        return dict(REDUCED_TIMING_SIZES)
    return {p: TEST_SIZES[p] for p in TIMING_PROTOCOLS}


def run_inference_time(results: Results, profile: str, *, progress: bool = True) -> pd.DataFrame:
    """Encoding and matching time of each trained model of ``results`` (``{label: {protocol: result}}``, e.g.
    :func:`run_comparison`) on random inputs of :func:`timing_sizes`, on the device evaluation uses; one row
    per (model, protocol) with ``encode_s``, ``match_s``, ``total_s``."""
    models, dims = {}, {}
    for label, by_protocol in results.items():
        loaded = load_run(next(iter(by_protocol.values()))["run"])
        models[str(label)], dims[str(label)] = loaded.model, int(loaded.checkpoint["feature_dim"])
        device = loaded.device
    return inference_time_table(models, timing_sizes(profile), feature_dim=dims, device=device, progress=progress)


def timing_caption(table: pd.DataFrame, results: Results, profile: str) -> Caption:
    sizes = "; ".join(f"{p}: {n_img:,} images x {n_cap:,} captions" for p, (n_img, n_cap) in
                      timing_sizes(profile).items())
    device = "CUDA" if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} torch threads)"
    return Caption(
        title="USER Fig. 6: encoding and matching time per model (itrlib, measured in this run)",
        protocol=f"random region features and captions of 8–16 tokens at the test sizes ({sizes}); a COCO 1K "
                 "fold has the f30k1k sizes",
        data=f"random inputs through the trained models of {data_kind(profile)}",
        images=sizes,
        training=f"models as trained in notebook 01 ({', '.join(map(str, results))}); timed on {device}",
        references="the USER paper's times (Sec. IV-E, V100 GPU) are in the figure's paper panel only: other "
                   "hardware, not comparable",
        rows="encode_s: every image and caption encoded once (batch 128); match_s: the full float32 score "
             "matrix; total_s = encode_s + match_s")


def paper_tradeoff() -> pd.DataFrame:
    """Methods with both a total inference time on F30K 1K (USER Sec. IV-E) and an rSum in USER's Table III."""
    times = load_reference("paper_timings.csv")
    times = times[(times["paper"] == "USER") & (times["dataset"] == "f30k") & (times["what"] == "total")]
    rows = []
    for method, seconds in zip(times["method"], times["seconds"], strict=True):
        name = "USER (SGE)" if method == "USER" else method
        try:
            rsum = paper_row("USER", "f30k", "1k", name)["rsum"]
        except KeyError:
            continue
        rows.append({"method": name, "total_s": float(seconds), "rSum": rsum})
    return pd.DataFrame(rows, columns=["method", "total_s", "rSum"])


def plot_inference_time(table: pd.DataFrame, results: Results, profile: str) -> plt.Figure:
    """Left: encode and match seconds per model and size (log scale). Middle: our rSum on f30k1k against the
    total time at the f30k1k size. Right: the same trade-off as printed by the USER paper (V100 GPU)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
    labels = [f"{m}\n{p}" for m, p in zip(table["model"], table["protocol"], strict=True)]
    x = range(len(table))
    axes[0].bar(x, table["encode_s"], label="encode")
    axes[0].bar(x, table["match_s"], bottom=table["encode_s"], label="match")
    axes[0].set_xticks(list(x), labels, fontsize=7)
    axes[0].set(yscale="log", ylabel="seconds")
    axes[0].set_title("itrlib: encoding + matching time (measured here)", fontsize=9)
    axes[0].legend(fontsize=8)
    first = table[table["protocol"] == table["protocol"].iloc[0]]
    for model, seconds in zip(first["model"], first["total_s"], strict=True):
        rsum = results[model][SWEEP_PROTOCOL]["metrics"]["rsum"] if SWEEP_PROTOCOL in results[model] else None
        if rsum is not None:
            axes[1].scatter(seconds, rsum)
            axes[1].annotate(model, (seconds, rsum), fontsize=8)
    axes[1].set(xlabel=f"total seconds at the {first['protocol'].iloc[0]} size", ylabel=f"rSum ({SWEEP_PROTOCOL})")
    axes[1].set_title(f"itrlib: rSum against time — {data_kind(profile)}", fontsize=9)
    paper = paper_tradeoff()
    axes[2].scatter(paper["total_s"], paper["rSum"], color="gray")
    for method, seconds, rsum in zip(paper["method"], paper["total_s"], paper["rSum"], strict=True):
        axes[2].annotate(method, (seconds, rsum), fontsize=8)
    axes[2].set(xscale="log", xlabel="total seconds (F30K 1K)", ylabel="rSum (F30K 1K)")
    axes[2].set_title("USER paper, Sec. IV-E + Table III — real Flickr30K, V100 GPU", fontsize=9)
    fig.suptitle("USER Fig. 6: inference time and the rSum–time trade-off (panels are not comparable: "
                 "different data and hardware)", fontsize=10)
    return fig
