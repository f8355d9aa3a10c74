"""MVSEN two-stage retrieval: rSum and evaluation time against the shortlist size M.

MVSEN scores every image–caption pair with a network. Two-stage retrieval (as LAVIS / ALBEF / BLIP with
``k_test``) lets VSE∞'s embeddings shortlist the top M captions of each image and the top M images of each
caption, and each MVSEN direction model rescores only those (:func:`itrlib.runs.any_run.evaluate_two_stage`).
The study reuses the runs of notebook 01 (both directions and VSE∞, :func:`run_two_stage_inputs`) and their
full-scoring evaluations, and evaluates each direction two-stage for every M of :func:`shortlist_sizes` on the
profile's COCO protocols (F30K 1K under a profile without them). The results are saved in the direction run
folders and reused.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullFormatter

from itrlib.evaluation.protocols import get_protocol, protocol_blocks
from itrlib.runs.any_run import evaluate_two_stage
from itrlib.suite.experiments import Where, train_where
from itrlib.suite.profiles import get_profile
from itrlib.suite.report.results import Results, data_kind
from itrlib.suite.report.tables import Caption
from itrlib.suite.studies.mvsen import DIRECTIONS, OTHER_MODELS, direction_run

SHORTLIST_RUN = "VSE∞"
"""Label (in :data:`itrlib.suite.studies.mvsen.OTHER_MODELS`) of the global model that shortlists."""
SHORTLIST_SIZES = {"reduced": (2, 8, 64), "default": (16, 32, 64, 128, 256)}
"""M per query. The smoke data's largest M covers a COCO 1K fold's whole gallery (10 images, 50 captions),
where two-stage must rank as full scoring does."""
FULL = "all"
"""Shortlist column of the full-scoring rows: every pair scored (notebook 01's evaluation)."""
WITHIN = 1.0
"""rSum points from full scoring within which an M counts as enough."""
COLUMNS = ["model", "protocol", "shortlist", "rsum", "rsum_vs_full", "within_1", "seconds", "pairs_scored",
           "i2t_r1", "t2i_r1"]


def run_two_stage_inputs(profile: str, where: Where = Where()) -> Results:
    """The runs the study reranks and shortlists with, as notebook 01 trains them (reused when finished):
    ``{"MVSEN t2i": ..., "MVSEN i2t": ..., "VSE∞": ...}``, each ``{protocol: eval result}`` of full scoring."""
    results = {f"MVSEN {d}": train_where("mvsen", profile, direction_run(d), where, [f"model.direction={d}"])
               for d in DIRECTIONS}
    method, name = next((method, name) for label, method, name in OTHER_MODELS if label == SHORTLIST_RUN)
    results[SHORTLIST_RUN] = train_where(method, profile, name, where)
    return results


def shortlist_sizes(profile: str) -> tuple[int, ...]:
    return SHORTLIST_SIZES["reduced" if get_profile(profile).reduced_studies else "default"]


def study_protocols(profile: str) -> list[str]:
    """The profile's COCO protocols (1K folds and 5K), or all its protocols when it has none."""
    protocols = get_profile(profile).protocols
    return [p for p in protocols if p.startswith("coco")] or list(protocols)


def seconds_of(result: dict) -> float:
    """Encoding, scoring and ranking seconds of one evaluation result."""
    timing = result["timing"]
    return float(timing["encode_s"] + timing["score_s"] + timing["rank_s"])


def block_sizes(result: dict) -> list[tuple[int, int]]:
    """(images, captions) of each block (fold) ``result``'s protocol ranks within."""
    n_images = int(result["n_images"])
    blocks = protocol_blocks(n_images, get_protocol(result["protocol"]), int(result["n_captions"]) // n_images)
    return [(i.stop - i.start, c.stop - c.start) for i, c in blocks]


def shortlist_pairs(result: dict, size: int) -> int:
    """Pairs a two-stage evaluation of ``result``'s protocol scores with shortlists of ``size``: each image
    query's min(M, captions) and each caption query's min(M, images), per block."""
    return sum(n_img * min(size, n_cap) + n_cap * min(size, n_img) for n_img, n_cap in block_sizes(result))


def covers_gallery(result: dict, size: int) -> bool:
    """Whether shortlists of ``size`` hold every image and caption of each block: two-stage then ranks as full
    scoring does."""
    return all(size >= max(n_img, n_cap) for n_img, n_cap in block_sizes(result))


def full_scoring_seconds(result: dict) -> tuple[float, int]:
    """(seconds, pairs) of full scoring for ``result``'s protocol, from a saved full evaluation: encoding and
    ranking as measured, scoring at its measured pairs/s times the protocol's own pairs (the protocols of one
    split share one scoring of the split, e.g. the COCO 1K folds are blocks of the 5K matrix)."""
    timing = result["timing"]
    pairs = sum(n_img * n_cap for n_img, n_cap in block_sizes(result))
    scoring = timing["score_s"] * pairs / timing["pairs_scored"]
    return float(timing["encode_s"] + scoring + timing["rank_s"]), pairs


def _row(model: str, protocol: str, shortlist: int | str, result: dict, seconds: float, pairs: int) -> dict:
    metrics = result["metrics"]
    return {"model": model, "protocol": protocol, "shortlist": shortlist, "rsum": metrics["rsum"],
            "seconds": seconds, "pairs_scored": pairs, "i2t_r1": metrics["i2t_r1"], "t2i_r1": metrics["t2i_r1"]}


def run_two_stage(results: Results, profile: str, *, progress: bool = True) -> pd.DataFrame:
    """One row per MVSEN direction, protocol of :func:`study_protocols` and M of :func:`shortlist_sizes`
    (two-stage, shortlisted by :data:`SHORTLIST_RUN`), and one full-scoring row (M = ``all``) each; plus
    ``rsum_vs_full`` and ``within_1`` (|rSum - full| <= :data:`WITHIN`)."""
    shortlist_run = next(iter(results[SHORTLIST_RUN].values()))["run"]
    rows = []
    for direction in DIRECTIONS:
        model = f"MVSEN {direction}"
        run = next(iter(results[model].values()))["run"]
        for protocol in study_protocols(profile):
            full = results[model][protocol]
            rows.append(_row(model, protocol, FULL, full, *full_scoring_seconds(full)))
            for size in shortlist_sizes(profile):
                found = evaluate_two_stage(run, [protocol], rerank_with=shortlist_run, shortlist=size, reuse=True,
                                           progress=progress)[protocol]
                rows.append(_row(model, protocol, size, found, seconds_of(found), found["timing"]["pairs_scored"]))
    table = pd.DataFrame(rows)
    full_rsum = table[table["shortlist"] == FULL].set_index(["model", "protocol"])["rsum"]
    table["rsum_vs_full"] = table["rsum"] - [full_rsum[m, p] for m, p in zip(table["model"], table["protocol"],
                                                                              strict=True)]
    table["within_1"] = table["rsum_vs_full"].abs() <= WITHIN
    return table[COLUMNS].round({"rsum": 1, "rsum_vs_full": 1, "seconds": 2, "i2t_r1": 1, "t2i_r1": 1})


def enough_shortlist(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and protocol, the smallest M from which every larger M is within :data:`WITHIN` rSum points of
    full scoring (``all`` when none is), with its rSum and seconds against full scoring's."""
    rows = []
    for (model, protocol), group in table.groupby(["model", "protocol"], sort=False):
        shortlisted = group[group["shortlist"] != FULL]
        full = group[group["shortlist"] == FULL].iloc[0]
        outside = shortlisted[~shortlisted["within_1"]]
        largest_outside = outside["shortlist"].max() if len(outside) else 0
        enough = shortlisted[shortlisted["shortlist"] > largest_outside]
        first = enough.iloc[0] if len(enough) else full
        rows.append({"model": model, "protocol": protocol, "enough_m": first["shortlist"], "rsum": first["rsum"],
                     "full_rsum": full["rsum"], "seconds": first["seconds"], "full_seconds": full["seconds"]})
    return pd.DataFrame(rows)


def check_lines(table: pd.DataFrame, results: Results) -> list[str]:
    """What notebook 07 checks on any machine: every shortlist scored exactly :func:`shortlist_pairs` pairs,
    every time is positive, and each shortlist that covers its gallery ranks as full scoring does (within
    :data:`WITHIN` rSum points)."""
    shortlisted = table[table["shortlist"] != FULL]
    sizes = [(row, results[row.model][row.protocol]) for row in shortlisted.itertuples()]
    pairs = all(row.pairs_scored == shortlist_pairs(full, row.shortlist) for row, full in sizes)
    covering = [row for row, full in sizes if covers_gallery(full, row.shortlist)]
    ranks = all(abs(row.rsum_vs_full) <= WITHIN for row in covering) if covering else "no M covers the gallery"
    return [f"pairs scored = min(M, gallery) per query and direction: {pairs}",
            f"all times positive: {bool((table['seconds'] > 0).all())}",
            f"a gallery-wide shortlist ranks as full scoring (within 1 rSum point): {ranks}"]


def two_stage_caption(table: pd.DataFrame, results: Results, profile: str) -> Caption:
    sizes = ", ".join(str(m) for m in shortlist_sizes(profile))
    shortlist_rsum = "; ".join(f"{p} {results[SHORTLIST_RUN][p]['metrics']['rsum']:.1f}"
                               for p in study_protocols(profile))
    return Caption(
        title="MVSEN two-stage retrieval: rSum and evaluation time against the shortlist size M (itrlib, "
              "measured here)",
        protocol=f"{', '.join(study_protocols(profile))}: {SHORTLIST_RUN} shortlists the top M captions per image "
                 "and the top M images per caption within each protocol block, the MVSEN direction model "
                 "rescores only those, the rest keep the shortlist's order below them",
        data=data_kind(profile),
        images=", ".join(f"{p}: {results[SHORTLIST_RUN][p]['n_images'] // get_protocol(p).folds:,}"
                         + (" per fold" if get_protocol(p).folds > 1 else "") for p in study_protocols(profile)),
        training=f"the direction runs and the {SHORTLIST_RUN} run of notebook 01",
        references="none: the paper scores every pair; LAVIS/ALBEF/BLIP evaluate this way with k_test",
        rows=f"M = {sizes} (two-stage, one query's shortlist scored at a time) and M = all (full scoring, notebook "
             "01's evaluation; its seconds are encoding and ranking as measured and scoring at its measured "
             "pairs/s for the protocol's pairs); rsum_vs_full: rSum minus full scoring's; within_1: within 1 "
             f"point; seconds: encode + score + rank. {SHORTLIST_RUN} alone: {shortlist_rsum}")


def plot_two_stage(table: pd.DataFrame, results: Results, profile: str) -> plt.Figure:
    """Left: rSum against M per direction and protocol, full scoring and the shortlist model alone as lines,
    the first M within 1 point marked. Right: evaluation seconds against M, full scoring as lines."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    enough = enough_shortlist(table).set_index(["model", "protocol"])
    for (model, protocol), group in table.groupby(["model", "protocol"], sort=False):
        shortlisted = group[group["shortlist"] != FULL]
        full = group[group["shortlist"] == FULL].iloc[0]
        sizes = shortlisted["shortlist"].astype(int)
        line, = axes[0].plot(sizes, shortlisted["rsum"], marker="o", label=f"{model}, {protocol}")
        axes[0].axhline(full["rsum"], color=line.get_color(), linestyle="--", linewidth=0.8)
        first = enough.loc[(model, protocol)]
        if first["enough_m"] != FULL:
            axes[0].scatter([int(first["enough_m"])], [first["rsum"]], s=140, facecolors="none",
                            edgecolors=line.get_color(), linewidths=1.5)
        axes[1].plot(sizes, shortlisted["seconds"], marker="o", color=line.get_color(), label=f"{model}, {protocol}")
        axes[1].axhline(full["seconds"], color=line.get_color(), linestyle="--", linewidth=0.8)
    for protocol in study_protocols(profile):
        axes[0].axhline(results[SHORTLIST_RUN][protocol]["metrics"]["rsum"], color="gray", linestyle=":",
                        linewidth=0.8)
    axes[0].set(xscale="log", xlabel="shortlist size M (log)", ylabel="rSum")
    axes[0].set_title(f"rSum (dashed: full scoring; dotted: {SHORTLIST_RUN} alone; circled: first M within "
                      f"{WITHIN:g} point)", fontsize=8)
    axes[1].set(xscale="log", xlabel="shortlist size M (log)", ylabel="seconds (encode + score + rank)")
    axes[1].set_title("evaluation time (dashed: full scoring)", fontsize=8)
    sizes = [int(m) for m in table["shortlist"].unique() if m != FULL]
    for axis in axes:
        axis.set_xticks(sizes, [str(m) for m in sizes])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.legend(fontsize=7)
    fig.suptitle(f"MVSEN two-stage retrieval against the shortlist size — {data_kind(profile)}", fontsize=10)
    return fig
