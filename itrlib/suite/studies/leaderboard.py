"""The leaderboard study: every model of the suite under one dataset, one text encoder and one budget (each
method's headline preset of the profile), trained with several seeds, evaluated on the profile's protocols.

Seed 0 of each method is the run its paper notebook trains (shared, reused when finished); seed i > 0 is the
same preset with ``train.seed`` raised by i, in a run folder of its own (``<run>_seed<i>``). The MVSEN
ensemble of each seed is a composite (alpha 0.5) of that seed's two direction runs. From these runs the study
tabulates, per protocol, the mean and spread over seeds, each method's gain over VSE∞ and each gain a paper
claims with a paired bootstrap interval over the test images (:mod:`itrlib.evaluation.significance`), the
cost of each method (parameters trained, training seconds per epoch, evaluation seconds), and the budget curve
(dev rSum after each epoch against optimiser steps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from itrlib.engine.components import load_run
from itrlib.errors import ConfigError
from itrlib.evaluation.protocols import get_protocol
from itrlib.evaluation.significance import paired_bootstrap
from itrlib.runs.composite import create_composite
from itrlib.runs.trained import training_curves
from itrlib.suite.experiments import Where, train_where
from itrlib.suite.profiles import get_profile, run_config
from itrlib.suite.report.leaderboard import NOT_SIGNIFICANT, leaderboard_table
from itrlib.suite.report.paper import paper_row
from itrlib.suite.report.results import table_caption
from itrlib.suite.report.tables import Caption
from itrlib.suite.studies import afa, mvsen, user

REFERENCE = "VSE∞"
"""The method every gain of the main table is measured against: the baseline the three papers build on."""
LEVEL = 0.95
SAMPLES = 2000
"""Bootstrap replicates of every interval."""


@dataclass(frozen=True)
class Entry:
    """One trained method of the leaderboard: its label, preset method, seed-0 run name and config changes."""

    label: str
    method: str
    run: str
    changes: tuple[str, ...] = ()


ENTRIES = (
    Entry(REFERENCE, "vse", "vse"),
    Entry("AFA", "afa", afa.FULL_RUN),
    Entry("USER (SGE)", "user", user.FULL_RUN),
    Entry("USER (CGE)", "user", user.CGE_RUN, tuple(user.CGE_OVERRIDES)),
    *(Entry(f"MVSEN {d}", "mvsen", mvsen.direction_run(d), (f"model.direction={d}",)) for d in mvsen.DIRECTIONS),
)
"""The trained methods, under the run names of their paper notebooks (so seed 0 is trained once for all)."""
ENSEMBLE_MEMBERS = tuple(f"MVSEN {d}" for d in mvsen.DIRECTIONS)
ENSEMBLE_RUN = "mvsen_ensemble"
"""The MVSEN ensemble (alpha 0.5) of :data:`ENSEMBLE_MEMBERS`: ``mvsen.ENSEMBLE``, the run name of notebook
mvsen/01 for seed 0."""


@dataclass(frozen=True)
class Claim:
    """A gain a paper claims: our method ``a`` against ``b``, and the paper's rows of the same two models."""

    a: str
    b: str
    paper: str
    paper_a: tuple[str, str]
    """``(method, variant)`` of ``a`` in the paper's tables."""
    paper_b: tuple[str, str]


CLAIMS = (
    Claim("AFA", REFERENCE, "AFA", ("Ours", "I+II+III+IV"), ("Ours", "I")),
    Claim("USER (SGE)", REFERENCE, "USER", ("USER (SGE)", ""), ("VSE∞", "")),
    Claim("USER (CGE)", "USER (SGE)", "USER", ("USER (CGE)", ""), ("USER (SGE)", "")),
    Claim(mvsen.ENSEMBLE, "MVSEN t2i", "MVSEN", ("MVSEN", "#12 R+M+C t2i+i2t"), ("MVSEN", "#10 R+M+C t2i")),
    Claim(mvsen.ENSEMBLE, "MVSEN i2t", "MVSEN", ("MVSEN", "#12 R+M+C t2i+i2t"), ("MVSEN", "#11 R+M+C i2t")),
)
"""The pairs a paper compares (AFA: the full model against its VSE∞ baseline row I of Table 3; USER: SGE against
VSE∞ and CGE against SGE in Table III; MVSEN: the ensemble against each direction in Table 4)."""

Board = dict[str, list[dict[str, dict]]]
"""``{method: [{protocol: eval result} for each seed]}``."""


def seed_count(profile: str, seeds: int | None = None) -> int:
    """``seeds`` when given (a positive int), else the profile's :attr:`~itrlib.suite.profiles.Profile.seeds`."""
    if seeds is None:
        return get_profile(profile).seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be a positive whole number (or None: the profile's), got {seeds!r}")
    return seeds


def seed_run_name(run: str, index: int) -> str:
    """The run of seed ``index``: ``run`` itself for 0 (the paper notebook's), ``<run>_seed<index>`` after."""
    return run if index == 0 else f"{run}_seed{index}"


def _seed_changes(entry: Entry, profile: str, index: int, where: Where) -> list[str]:
    if index == 0:
        return list(entry.changes)
    base = run_config(entry.method, profile, overrides=[*where.overrides, *entry.changes]).train.seed
    return [*entry.changes, f"train.seed={base + index}"]


def run_leaderboard(profile: str, where: Where = Where(), seeds: int | None = None) -> Board:
    """Train (or reuse) every :data:`ENTRIES` method for each seed, evaluate it on the profile's protocols, and
    add the MVSEN ensemble of each seed: ``{method: [{protocol: result} per seed]}``, :data:`REFERENCE` first."""
    count = seed_count(profile, seeds)
    spec = get_profile(profile)
    board: Board = {}
    for entry in ENTRIES:
        board[entry.label] = [train_where(entry.method, profile, seed_run_name(entry.run, i), where,
                                          _seed_changes(entry, profile, i, where)) for i in range(count)]
    members = {entry.label: entry.run for entry in ENTRIES if entry.label in ENSEMBLE_MEMBERS}
    board[mvsen.ENSEMBLE] = [
        create_composite(spec.runs_dir / seed_run_name(ENSEMBLE_RUN, i),
                         [str(spec.runs_dir / seed_run_name(members[m], i)) for m in ENSEMBLE_MEMBERS], alpha=0.5,
                         protocols=spec.protocols, data_root=where.data_root, progress=where.progress)
        for i in range(count)]
    return board


def _by_protocol(board: Board, protocol: str) -> dict[str, list[dict]]:
    return {method: [seed[protocol] for seed in seeds] for method, seeds in board.items()}


def _run_dirs(seeds: Sequence[Mapping[str, dict]]) -> list[str]:
    return [next(iter(seed.values()))["run"] for seed in seeds]


def method_costs(board: Board, protocol: str) -> pd.DataFrame:
    """Per method: parameters trained (``requires_grad``; seed 0's model), mean training seconds per epoch (the
    ``epoch_seconds`` of every validation record of every seed) and mean evaluation seconds under ``protocol``
    (encode, score, rank). The ensemble's are the sums of its members' (it trains nothing; its members score)."""
    rows = {}
    for entry in ENTRIES:
        seeds = board[entry.label]
        model = load_run(_run_dirs(seeds)[0], device="cpu").model
        epoch_seconds = [s for run in _run_dirs(seeds) for s in _epoch_seconds(run)]
        rows[entry.label] = {
            "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "train s/epoch": float(np.mean(epoch_seconds)) if epoch_seconds else np.nan,
            "eval s": float(np.mean([evaluation_seconds(seed[protocol]) for seed in seeds]))}
    if mvsen.ENSEMBLE in board:
        rows[mvsen.ENSEMBLE] = {key: sum(rows[m][key] for m in ENSEMBLE_MEMBERS)
                                for key in ("parameters", "train s/epoch", "eval s")}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method").reset_index()


def evaluation_seconds(result: dict) -> float:
    """Encoding, scoring and ranking seconds of one evaluation (its ``timing`` entries ending in ``_s``)."""
    return float(sum(value for key, value in result.get("timing", {}).items() if key.endswith("_s")))


def _epoch_seconds(run_dir: str) -> list[float]:
    _, val = training_curves(run_dir)
    if val.empty or "epoch_seconds" not in val:
        return []
    return [float(s) for s in val["epoch_seconds"].dropna()]


def main_table(board: Board, protocol: str, costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`~itrlib.suite.report.leaderboard.leaderboard_table` of ``protocol`` against :data:`REFERENCE`, with
    the :func:`method_costs` columns when given."""
    table = leaderboard_table(_by_protocol(board, protocol), REFERENCE, samples=SAMPLES, level=LEVEL)
    table = table if costs is None else table.merge(costs, on="method", how="left")
    return table.round({"rSum std": 1, f"rSum vs {REFERENCE}": 1, "train s/epoch": 2, "eval s": 2})


def paper_gain(claim: Claim, protocol: str) -> float:
    """The rSum gain the paper prints for ``claim`` under ``protocol`` (NaN if it prints either row nowhere)."""
    spec = get_protocol(protocol)
    try:
        a = paper_row(claim.paper, spec.paper_dataset, spec.paper_protocol, *claim.paper_a)
        b = paper_row(claim.paper, spec.paper_dataset, spec.paper_protocol, *claim.paper_b)
    except KeyError:
        return np.nan
    return a["rsum"] - b["rsum"] if "rsum" in a and "rsum" in b else np.nan


def claims_table(board: Board, protocol: str) -> pd.DataFrame:
    """One row per :data:`CLAIMS` pair present in ``board``: the paper's gain, ours (difference of the seed means)
    with its bootstrap interval, and whether ours holds beyond the test-set noise, and with the paper's sign."""
    runs = _by_protocol(board, protocol)
    percent = f"{round(100 * LEVEL)}%"
    rows = []
    for claim in CLAIMS:
        if claim.a not in runs or claim.b not in runs:
            continue
        gain = paired_bootstrap(runs[claim.a], runs[claim.b], samples=SAMPLES, level=LEVEL)
        paper = paper_gain(claim, protocol)
        rows.append({"claim": f"{claim.a} over {claim.b}", "paper": claim.paper, "paper gain": paper,
                     "our gain": gain.difference, f"{percent} interval": f"[{gain.low:+.1f}, {gain.high:+.1f}]",
                     "significant": "yes" if gain.significant else NOT_SIGNIFICANT,
                     "verdict": claim_verdict(paper, gain.low, gain.high)})
    return pd.DataFrame(rows).round({"paper gain": 1, "our gain": 1})


def claim_verdict(paper: float, low: float, high: float) -> str:
    """What our interval says of a paper's gain: ``reproduced`` (the interval excludes 0, on the paper's side),
    ``reversed`` (it excludes 0 on the other side), ``not resolved`` (it holds 0)."""
    if low <= 0 <= high:
        return "not resolved: the interval holds 0"
    if np.isnan(paper):
        return "no paper number"
    return "reproduced" if (low > 0) == (paper > 0) else "reversed"


def budget_frame(board: Board) -> pd.DataFrame:
    """Dev rSum after every epoch against optimiser steps: one row per (method, seed, epoch) of the trained
    methods (columns ``method``, ``seed``, ``step``, ``rsum``)."""
    rows = []
    for entry in ENTRIES:
        for seed, run in enumerate(_run_dirs(board[entry.label])):
            _, val = training_curves(run)
            rows += [{"method": entry.label, "seed": seed, "step": int(r.step), "rsum": float(r.rsum)}
                     for r in val.itertuples()]
    return pd.DataFrame(rows, columns=["method", "seed", "step", "rsum"])


def plot_budget_curves(frame: pd.DataFrame, title: str) -> plt.Figure:
    """Mean dev rSum over seeds against optimiser steps, one line per method, the band from the lowest to the
    highest seed."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for method, rows in frame.groupby("method", sort=False):
        by_step = rows.groupby("step")["rsum"]
        mean = by_step.mean()
        line, = ax.plot(mean.index, mean.values, marker="o", label=method)
        ax.fill_between(mean.index, by_step.min().values, by_step.max().values, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("optimiser steps")
    ax.set_ylabel("dev rSum (mean over seeds; band: lowest to highest)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _seed_text(board: Board) -> str:
    counts = sorted({len(seeds) for seeds in board.values()})
    return " or ".join(map(str, counts))


def main_caption(board: Board, table: pd.DataFrame, profile: str, protocol: str) -> Caption:
    percent = f"{round(100 * LEVEL)}%"
    rows = (f"mean over {_seed_text(board)} seeds (seed i: train.seed of the preset + i; std: over the seeds); "
            f"rSum vs {REFERENCE}: difference of the seed means with its {percent} paired-bootstrap interval over "
            f"the test images ({SAMPLES} resamples of the images, each image's queries averaged over the seeds); "
            "parameters: those trained (seed 0's model); train s/epoch: mean wall seconds of an epoch's training "
            "steps; eval s: encoding, scoring and ranking under the protocol; the MVSEN ensemble (alpha 0.5) trains "
            "nothing, its costs are its two members' sums")
    return table_caption(f"Leaderboard on {protocol}: every method under one budget, several seeds",
                         {m: seeds[0] for m, seeds in board.items()}, table, profile, protocols=[protocol],
                         rows=rows, references="none: the papers' numbers are in their own notebooks' tables")


def claims_caption(board: Board, table: pd.DataFrame, profile: str, protocol: str) -> Caption:
    rows = ("each gain a paper claims between two of its models: the paper's printed rSum gain (AFA: Table 3 row "
            "I+II+III+IV over row I, the VSE∞ baseline; USER: Table III; MVSEN: Table 4 #12 over #10 and #11) beside "
            "ours, the difference of the seed means with its paired-bootstrap interval; reproduced: the interval "
            "excludes 0 on the paper's side")
    return table_caption(f"The papers' claimed gains on {protocol}, and ours", {m: s[0] for m, s in board.items()},
                         table, profile, protocols=[protocol], rows=rows,
                         references="AFA Table 3, USER Table III, MVSEN Table 4 (paper gain column)")


def curves_complete(frame: pd.DataFrame, board: Board) -> bool:
    """Whether :func:`budget_frame` holds a curve for every seed of every trained method."""
    return all(set(frame.loc[frame["method"] == e.label, "seed"]) == set(range(len(board[e.label])))
               for e in ENTRIES)
