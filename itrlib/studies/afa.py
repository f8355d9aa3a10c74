"""AFA studies: the Table 3 ablation rows and the Fig. 3 top-k sweep, as sets of runs of ``afa_<profile>``.

The full model (row I+II+III+IV, ``merge_ratio`` at its default) is the run ``afa`` of notebook 01, so
the three AFA notebooks share it instead of training it three times.
"""

from __future__ import annotations

import pandas as pd
import torch

from itrlib.experiments import train_variants
from itrlib.models.afa import ABLATION_ROWS, TOPK_RATIOS, AFAConfig
from itrlib.nn.aggregation import merge_count
from itrlib.report.tables import metrics_frame

FULL_RUN = "afa"
PRINTED_EQ7_ROW = "I+II+III+IV (eq. 7 as printed)"
"""The full model with the real positive S_ii in the harder-negative terms (``model.mixed_positive=real``)."""
PRINTED_EQ7_RUN = "afa_eq7_printed"
PRINTED_EQ7_OVERRIDES = ["model.mixed_positive=real"]
SMOKE_RATIOS: tuple[float, ...] = (0.0, AFAConfig.merge_ratio)
"""The smoke profile trains two points of the sweep: enough to exercise the code, fast enough for tests."""


def ablation_rows() -> dict[str, list[str]]:
    """Table 3 rows (paper labels) plus the full model with eq. 7 as printed: ``{row: overrides}``."""
    return {**ABLATION_ROWS, PRINTED_EQ7_ROW: PRINTED_EQ7_OVERRIDES}


def ablation_run_name(row: str) -> str:
    """Run folder of a row: the full model is the shared ``afa`` run, eq. 7 as printed ``afa_eq7_printed``."""
    if row == PRINTED_EQ7_ROW:
        return PRINTED_EQ7_RUN
    return FULL_RUN if not ABLATION_ROWS[row] else f"afa_table3_{row}"


def run_ablation(profile: str, *, data_root: str | None = None, overrides: list[str] | None = None,
                 progress: bool = True) -> dict[str, dict[str, dict]]:
    """Train (or reuse) and evaluate every row of :func:`ablation_rows`: ``{row: {protocol: eval result}}``."""
    rows = ablation_rows()
    names = {row: ablation_run_name(row) for row in rows}
    results = train_variants("afa", profile, {names[row]: rows[row] for row in rows},
                             data_root=data_root, overrides=overrides, progress=progress)
    return {row: results[names[row]] for row in rows}


def sweep_ratios(profile: str) -> tuple[float, ...]:
    """Merge ratios of the Fig. 3 sweep under ``profile``."""
    return SMOKE_RATIOS if profile == "smoke" else TOPK_RATIOS


def topk_run_name(ratio: float) -> str:
    """Run folder of one sweep point: the default ratio is the shared ``afa`` run."""
    return FULL_RUN if ratio == AFAConfig.merge_ratio else f"afa_ratio_{ratio}"


def run_topk_sweep(profile: str, *, data_root: str | None = None, overrides: list[str] | None = None,
                   progress: bool = True) -> dict[float, dict[str, dict]]:
    """Train (or reuse) and evaluate one run per merge ratio: ``{ratio: {protocol: eval result}}``."""
    ratios = sweep_ratios(profile)
    results = train_variants("afa", profile, {topk_run_name(r): [f"model.merge_ratio={r}"] for r in ratios},
                             data_root=data_root, overrides=overrides, progress=progress)
    return {r: results[topk_run_name(r)] for r in ratios}


def topk_sweep_table(results: dict[float, dict[str, dict]], regions: int = 36) -> pd.DataFrame:
    """One row per (ratio, protocol) with k, the pairs merged in an image of ``regions`` regions."""
    rows = [{"merge_ratio": ratio, f"k ({regions} regions)": int(merge_count(torch.tensor([regions]), ratio=ratio)),
             "protocol": protocol, **result["metrics"]}
            for ratio, by_protocol in results.items() for protocol, result in by_protocol.items()]
    return metrics_frame(rows)
