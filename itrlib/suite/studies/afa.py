"""AFA studies: the Table 3 ablation rows and the Fig. 3 top-k sweep, as sets of runs of ``afa_<profile>``.

On real data every study run trains the profile's whole budget, and the full model (row I+II+III+IV,
``merge_ratio`` at its default) is the run ``afa`` of notebook 01, shared by the three AFA notebooks. On
synthetic data (embedded, smoke) the study runs train the short :func:`study_budget`, as USER's and MVSEN's
studies do, so there the full model and the eq. 7 row are runs of their own at that budget, ``afa_sweep`` and
``afa_eq7_printed_sweep``, shared by Table 3 and Fig. 3.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch

from itrlib.models.afa import ABLATION_ROWS, TOPK_RATIOS, AFAConfig
from itrlib.nn.afa_aggregation import merge_count
from itrlib.suite.experiments import Where, train_where
from itrlib.suite.profiles import get_profile
from itrlib.suite.report.paper import paper_sweep, paper_sweep_note, paper_training
from itrlib.suite.report.plots import plot_ours_beside_paper, plot_sweep
from itrlib.suite.report.results import Results, ours_title, paper_title, table_caption
from itrlib.suite.report.tables import Caption, metrics_frame
from itrlib.suite.studies.sweeps import shared_run_name, step_budget

STUDY_EPOCH_STEPS = 20
"""Steps of each of the two epochs of an AFA study run on the embedded data (:func:`study_budget`)."""

FULL_RUN = "afa"
PRINTED_EQ7_ROW = "I+II+III+IV (eq. 7 as printed)"
"""The full model with the real positive S_ii in the harder-negative terms (``model.mixed_positive=real``)."""
PRINTED_EQ7_RUN = "afa_eq7_printed"
PRINTED_EQ7_OVERRIDES = ["model.mixed_positive=real"]
ROW_DESCRIPTIONS: dict[str, str] = {
    "I": "(I) MLP + mean pooling + VSE++ loss",
    "I+II": "(II) + feature aggregation",
    "I+II+III": "(III) mean → dimension-wise max selection",
    "I+II+III+IV": "(IV) + harder-negative loss = full AFA",
    PRINTED_EQ7_ROW: "\"eq. 7 as printed\": full AFA with the real positive S_ii in the harder-negative terms "
                     "(not a row of the paper)",
}
"""What each Table 3 row adds (rows are cumulative: I+II is row I plus aggregation)."""
REGIONS = 36
"""Regions per image of the precomp features: the k of Fig. 3 is counted for this many tokens."""
K_COLUMN = f"k ({REGIONS} regions)"
K_AXIS = f"merged pairs k (of {REGIONS} regions)"
REDUCED_RATIOS: tuple[float, ...] = (0.0, AFAConfig.merge_ratio)
"""Points of the sweep under a profile with ``reduced_studies`` (smoke): enough to exercise the code, fast
enough for tests."""


def study_budget(profile: str) -> list[str]:
    """Overrides of every Table 3 / Fig. 3 run on synthetic data, no ``last.pt`` kept: under a profile with
    ``study_steps`` (smoke) that many steps of one epoch at the initial lr; otherwise (embedded) two epochs of
    :data:`STUDY_EPOCH_STEPS` steps at the initial lr, the sum-loss warm-up epoch and one hardest-negative epoch
    (``model.mean_warmup_epochs`` = 1), so every row trains both regimes of its loss; the 9 runs at the whole
    embedded budget took about 28 of ``make reproduce-tables``' minutes on 2 CPU cores. None on real data."""
    spec = get_profile(profile)
    if spec.study_steps:
        return step_budget(spec.study_steps)
    return step_budget(STUDY_EPOCH_STEPS, epochs=2) if spec.synthetic else []


def ablation_rows() -> dict[str, list[str]]:
    """Table 3 rows (paper labels) plus the full model with eq. 7 as printed: ``{row: overrides}``."""
    return {**ABLATION_ROWS, PRINTED_EQ7_ROW: PRINTED_EQ7_OVERRIDES}


def ablation_run_name(row: str, profile: str) -> str:
    """Run folder of a row: the full model is the shared ``afa`` run, eq. 7 as printed ``afa_eq7_printed``
    (each ``..._sweep`` under a :func:`study_budget`), the other rows ``afa_table3_<row>``."""
    if row == PRINTED_EQ7_ROW:
        return shared_run_name(PRINTED_EQ7_RUN, study_budget(profile))
    return shared_run_name(FULL_RUN, study_budget(profile)) if not ABLATION_ROWS[row] else f"afa_table3_{row}"


def run_ablation(profile: str, where: Where = Where()) -> dict[str, dict[str, dict]]:
    """Train (or reuse) and evaluate every row of :func:`ablation_rows`: ``{row: {protocol: eval result}}``."""
    rows = ablation_rows()
    return {row: train_where("afa", profile, ablation_run_name(row, profile), where,
                             [*study_budget(profile), *changes])
            for row, changes in rows.items()}


def sweep_ratios(profile: str) -> tuple[float, ...]:
    """Merge ratios of the Fig. 3 sweep under ``profile``."""
    return REDUCED_RATIOS if get_profile(profile).reduced_studies else TOPK_RATIOS


def topk_run_name(ratio: float, profile: str) -> str:
    """Run folder of one sweep point: the default ratio is the shared ``afa`` run (``afa_sweep`` under a
    :func:`study_budget`)."""
    return shared_run_name(FULL_RUN, study_budget(profile)) if ratio == AFAConfig.merge_ratio else f"afa_ratio_{ratio}"


def run_topk_sweep(profile: str, where: Where = Where()) -> dict[float, dict[str, dict]]:
    """Train (or reuse) and evaluate one run per merge ratio: ``{ratio: {protocol: eval result}}``."""
    return {ratio: train_where("afa", profile, topk_run_name(ratio, profile), where,
                               [*study_budget(profile), f"model.merge_ratio={ratio}"])
            for ratio in sweep_ratios(profile)}


def merged_pairs(ratio: float, regions: int = REGIONS) -> int:
    """k: the pairs merged in an image of ``regions`` regions at merge ratio ``ratio``."""
    return int(merge_count(torch.tensor([regions]), ratio=ratio))


def default_k(regions: int = REGIONS) -> int:
    """k of the default ``AFAConfig.merge_ratio`` (9 of 36 regions)."""
    return merged_pairs(AFAConfig.merge_ratio, regions)


def topk_sweep_table(results: dict[float, dict[str, dict]]) -> pd.DataFrame:
    """One row per (ratio, protocol) with k (:data:`K_COLUMN`), the pairs merged in an image of 36 regions."""
    rows = [{"merge_ratio": ratio, K_COLUMN: merged_pairs(ratio),
             "protocol": protocol, **result["metrics"]}
            for ratio, by_protocol in results.items() for protocol, result in by_protocol.items()]
    return metrics_frame(rows)


# --- captions and figures of the notebooks -------------------------------------------------------------


def ablation_rows_text() -> str:
    """What rows I–IV (and the eq. 7 row) are, for a caption or a figure note."""
    return "; ".join(ROW_DESCRIPTIONS[row] for row in ablation_rows())


def ablation_caption(by_row: Results, table: pd.DataFrame, protocol: str, profile: str) -> Caption:
    """Caption of the Table 3 table (:func:`itrlib.suite.report.results.variant_table` of :func:`run_ablation`)."""
    return table_caption(f"AFA Table 3 ablation on {protocol}: itrlib beside the AFA paper", by_row, table,
                         profile, protocols=[protocol], rows=ablation_rows_text())


def plot_ablation(table: pd.DataFrame, by_row: Results, protocol: str, profile: str) -> plt.Figure:
    """Table 3 rSum per row: ours and the AFA paper's in separate panels, rows I–IV explained underneath."""
    return plot_ours_beside_paper(table, metric="rSum", group="variant", hue="source",
                                  ours_title=ours_title(by_row, profile, [protocol]),
                                  paper_title=paper_title(table, [protocol]),
                                  title=f"AFA Table 3 rows: rSum on {protocol}", note=ablation_rows_text())


def fig3_paper_points() -> pd.DataFrame:
    """The points of the AFA paper's Fig. 3 in the packaged CSVs (:func:`itrlib.suite.report.paper.paper_sweep`):
    empty, the paper prints none."""
    return paper_sweep("AFA", "Fig. 3", "k")


def fig3_reference() -> str:
    """Where Fig. 3's reference values come from, or why there are none."""
    points = fig3_paper_points()
    if not points.empty:
        return f"the AFA paper's curve: {', '.join(dict.fromkeys(points['source']))}"
    return (f"none: the AFA paper's Fig. 3 gives no values, only the trend "
            f"({paper_sweep_note('AFA', 'Fig. 3')})")


def _labelled(results: dict[float, dict[str, dict]]) -> Results:
    return {f"merge_ratio={ratio:g}": by_protocol for ratio, by_protocol in results.items()}


def topk_caption(results: dict[float, dict[str, dict]], table: pd.DataFrame, profile: str) -> Caption:
    """Caption of the Fig. 3 table (:func:`topk_sweep_table`)."""
    rows = (f"one row per merge ratio and protocol; {K_COLUMN} = the pairs merged in an image of {REGIONS} "
            f"regions, k = min(floor(ratio·{REGIONS}), {REGIONS // 2}); the default ratio "
            f"{AFAConfig.merge_ratio:g} gives k = {default_k()}")
    return table_caption("AFA Fig. 3: rSum against the merged pairs k", _labelled(results), table, profile,
                         rows=rows, references=fig3_reference())


def plot_topk_sweep(table: pd.DataFrame, results: dict[float, dict[str, dict]], profile: str) -> plt.Figure:
    """rSum against k (ours), the default k marked, beside the paper's Fig. 3 in its own panel (its values
    when the packaged CSVs have them, else a note that the paper gives only the trend)."""
    protocols = list(dict.fromkeys(table["protocol"]))
    return plot_sweep(table, x=K_COLUMN, y="rSum", xlabel=K_AXIS, title="AFA Fig. 3: rSum against k",
                      default=default_k(),
                      default_label=f"default k = {default_k()} (merge_ratio {AFAConfig.merge_ratio:g})",
                      ours_title=ours_title(_labelled(results), profile, protocols),
                      paper=fig3_paper_points(),
                      paper_title=f"AFA paper, Fig. 3 — real Flickr30K (1K test presumably: 1,000 test images), "
                                  f"{paper_training('AFA')}",
                      paper_note=paper_sweep_note("AFA", "Fig. 3"))
