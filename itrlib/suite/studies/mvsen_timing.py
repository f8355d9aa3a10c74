"""MVSEN Fig. 5: retrieval time of MVSEN (each direction and the two-model ensemble) against the suite's
other models, measured on random inputs through the trained runs of notebook 01, then projected to the
test sizes.

MVSEN scores every image–caption pair with a network, so a full F30K 1K evaluation (5 M pairs) takes
minutes per direction on a CPU; the notebook measures a smaller matrix (:func:`measure_size`) and projects
each phase to the test sizes (:func:`itrlib.suite.inference_time.projected_times`: encoding in proportion to the
items, matching to the pairs). The ensemble scores with both direction models, so its time is their sum.
The paper's Fig. 5 (RTX 3090, against SGRAF, CGMN and NAAF) prints no numbers.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.ticker import NullFormatter

from itrlib.engine.components import load_run
from itrlib.progress import say
from itrlib.suite.inference_time import TEST_SIZES, measure_inference_time, projected_times
from itrlib.suite.profiles import get_profile
from itrlib.suite.report.results import Results, data_kind
from itrlib.suite.report.tables import Caption
from itrlib.suite.studies.mvsen import DIRECTIONS, ENSEMBLE, OTHER_MODELS, SWEEP_PROTOCOL

TIMED = (*(f"MVSEN {d}" for d in DIRECTIONS), *(label for label, _, _ in OTHER_MODELS))
"""Models timed (labels of :func:`itrlib.suite.studies.mvsen.run_comparison`); the ensemble is their MVSEN sum."""
PROJECTED = ("f30k1k", "coco5k")
"""Test sizes the measured times are projected to (a COCO 1K fold has the f30k1k sizes)."""
MEASURE_SIZES = {"reduced": (20, 100), "default": (100, 500)}
"""(images, captions) timed: 50 K pairs (smoke: 2 K), a few seconds per MVSEN direction on a CPU."""
COLUMNS = ["model", "images", "captions", "encode_s", "match_s", "total_s", "pairs_per_s",
           *(f"{p}_total_s" for p in PROJECTED)]


def measure_size(profile: str) -> tuple[int, int]:
    return MEASURE_SIZES["reduced" if get_profile(profile).reduced_studies else "default"]


def _row(label: str, timing: dict) -> dict:
    row = {"model": label, "images": timing["images"], "captions": timing["captions"],
           "encode_s": timing["encode"], "match_s": timing["match"], "total_s": timing["total"],
           "pairs_per_s": timing["pairs"] / timing["match"]}
    for protocol in PROJECTED:
        row[f"{protocol}_total_s"] = projected_times(timing, *TEST_SIZES[protocol])["total"]
    return row


def run_retrieval_time(results: Results, profile: str, *, progress: bool = True) -> pd.DataFrame:
    """One row per model of :data:`TIMED` (and the ensemble: both directions' times added) with the measured
    encode/match/total seconds at :func:`measure_size`, the matching rate and the projected totals at the
    test sizes, on the device evaluation uses."""
    n_images, n_captions = measure_size(profile)
    rows = []
    for label in TIMED:
        loaded = load_run(next(iter(results[label].values()))["run"])
        num_labels = getattr(loaded.model.config, "num_labels", None)
        say(f"retrieval time: {label}", progress)
        timing = measure_inference_time(loaded.model, n_images=n_images, n_captions=n_captions,
                                        feature_dim=int(loaded.checkpoint["feature_dim"]), device=loaded.device,
                                        side_dims={"label": num_labels} if num_labels else None, progress=progress)
        rows.append(_row(label, timing))
    table = pd.DataFrame(rows, columns=COLUMNS)
    members = table[table["model"].isin([f"MVSEN {d}" for d in DIRECTIONS])]
    ensemble = {column: members[column].sum() for column in COLUMNS[3:]}
    ensemble.update(model=ENSEMBLE, images=n_images, captions=n_captions,
                    pairs_per_s=n_images * n_captions / ensemble["match_s"])
    return rounded(pd.concat([table, pd.DataFrame([ensemble], columns=COLUMNS)], ignore_index=True))


def rounded(table: pd.DataFrame) -> pd.DataFrame:
    """The timing table as shown: measured seconds to the microsecond (a fast model's 2 K-pair matrix under
    smoke takes well under a millisecond, and read 0.000 at ms precision), rates to 1 pair/s, projections to
    0.1 s."""
    return table.round({"encode_s": 6, "match_s": 6, "total_s": 6, "pairs_per_s": 0,
                        **{f"{p}_total_s": 1 for p in PROJECTED}})


def timing_caption(table: pd.DataFrame, profile: str) -> Caption:
    n_images, n_captions = measure_size(profile)
    sizes = "; ".join(f"{p}: {TEST_SIZES[p][0]:,} x {TEST_SIZES[p][1]:,}" for p in PROJECTED)
    device = "CUDA" if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} torch threads)"
    return Caption(
        title="MVSEN Fig. 5: retrieval time of MVSEN against the suite's other models (itrlib, measured here)",
        protocol=f"every image against every caption: random region features and captions of 8–16 tokens, "
                 f"{n_images} images x {n_captions} captions measured, projected to the test sizes ({sizes})",
        data=f"random inputs through the trained models of {data_kind(profile)} (notebook 01)",
        images=f"{n_images} measured",
        training=f"models as trained in notebook 01; timed on {device}",
        references="none: the paper's Fig. 5 (RTX 3090, MVSEN against SGRAF, CGMN and NAAF) prints no numbers",
        rows="encode_s / match_s / total_s: measured seconds (encoding every image and caption once, the full "
             "float32 score matrix); pairs_per_s: matching rate; *_total_s: projected seconds at the test size "
             "(encoding scales with the items, matching with the pairs); MVSEN t2i+i2t = both direction models")


def plot_retrieval_time(table: pd.DataFrame, results: Results, profile: str) -> plt.Figure:
    """Left: projected total seconds per model at each test size (log scale). Right: rSum on f30k1k against
    the projected f30k1k time (the paper's trade-off, on our data and hardware)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    width = 0.8 / len(PROJECTED)
    for i, protocol in enumerate(PROJECTED):
        axes[0].bar([x + i * width for x in range(len(table))], table[f"{protocol}_total_s"], width=width,
                    label=f"{protocol} ({TEST_SIZES[protocol][0]:,} x {TEST_SIZES[protocol][1]:,}, projected)")
    axes[0].set_xticks([x + width / 2 for x in range(len(table))], table["model"], fontsize=7, rotation=20)
    axes[0].set(yscale="log", ylabel="seconds (encode + match)")
    axes[0].set_title("itrlib: bidirectional retrieval time, projected from the measured run", fontsize=9)
    axes[0].legend(fontsize=7)
    for model, seconds in zip(table["model"], table[f"{SWEEP_PROTOCOL}_total_s"], strict=True):
        if model in results and SWEEP_PROTOCOL in results[model]:
            rsum = results[model][SWEEP_PROTOCOL]["metrics"]["rsum"]
            axes[1].scatter(seconds, rsum)
            axes[1].annotate(model, (seconds, rsum), fontsize=7)
    axes[1].set(xscale="log", xlabel=f"projected seconds at the {SWEEP_PROTOCOL} size",
                ylabel=f"rSum ({SWEEP_PROTOCOL})")
    axes[1].xaxis.set_minor_formatter(NullFormatter())  # decade labels only: minor ones overlap
    axes[1].set_title(f"itrlib: rSum against retrieval time — {data_kind(profile)}", fontsize=9)
    fig.suptitle("MVSEN Fig. 5: retrieval time (the paper's figure prints no numbers: nothing to draw beside it)",
                 fontsize=10)
    return fig
