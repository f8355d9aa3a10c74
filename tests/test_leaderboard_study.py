"""The leaderboard study: seeds and their runs, the papers' claimed gains against ours, costs, budget curves."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from itrlib.errors import ConfigError
from itrlib.evaluation.ranking import evaluate_scores
from itrlib.evaluation.significance import paired_bootstrap
from itrlib.suite.report.paper import paper_row
from itrlib.suite.studies import leaderboard as study


def _eval(signal: float, seed: int, run: str = "run") -> dict:
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((60, 300))
    scores[np.arange(300) // 5, np.arange(300)] += signal
    return evaluate_scores(scores, "f30k1k") | {"run": run}


def test_seed_zero_is_the_paper_notebooks_run_and_the_count_comes_from_the_profile():
    assert study.seed_run_name("afa", 0) == "afa" and study.seed_run_name("afa", 2) == "afa_seed2"
    assert study.seed_count("embedded") == 3 and study.seed_count("smoke") == 2 and study.seed_count("f30k") == 1
    assert study.seed_count("smoke", 5) == 5
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match="seeds must be a positive whole number"):
            study.seed_count("smoke", bad)
    assert study.ENTRIES[0].label == study.REFERENCE
    assert set(study.ENSEMBLE_MEMBERS) <= {e.label for e in study.ENTRIES}


def test_a_seed_raises_the_presets_seed_and_keeps_the_methods_changes():
    cge = next(e for e in study.ENTRIES if e.label == "USER (CGE)")
    where = study.Where(overrides=("train.seed=7",))
    assert study._seed_changes(cge, "smoke", 0, where) == list(cge.changes)
    assert study._seed_changes(cge, "smoke", 2, where) == [*cge.changes, "train.seed=9"]


def test_the_papers_gains_are_their_printed_rows():
    afa = study.CLAIMS[0]
    expected = (paper_row("AFA", "f30k", "1k", "Ours", "I+II+III+IV")["rsum"]
                - paper_row("AFA", "f30k", "1k", "Ours", "I")["rsum"])
    assert study.paper_gain(afa, "f30k1k") == pytest.approx(expected)
    user_sge = study.CLAIMS[1]
    assert study.paper_gain(user_sge, "f30k1k") == pytest.approx(
        paper_row("USER", "f30k", "1k", "USER (SGE)")["rsum"] - paper_row("USER", "f30k", "1k", "VSE∞")["rsum"])
    mvsen_claim = study.CLAIMS[3]
    assert math.isnan(study.paper_gain(mvsen_claim, "coco5k"))  # Table 4 is F30K only


def test_a_claim_is_reproduced_reversed_or_not_resolved_by_our_interval():
    assert study.claim_verdict(5.0, 1.0, 9.0) == "reproduced"
    assert study.claim_verdict(5.0, -9.0, -1.0) == "reversed"
    assert study.claim_verdict(-2.0, -9.0, -1.0) == "reproduced"
    assert study.claim_verdict(5.0, -1.0, 9.0).startswith("not resolved")
    assert study.claim_verdict(float("nan"), 1.0, 9.0) == "no paper number"


def test_claims_table_bootstraps_the_seed_means_of_each_claimed_pair():
    board = {"VSE∞": [{"f30k1k": _eval(1.0, s)} for s in (1, 2)],
             "USER (SGE)": [{"f30k1k": _eval(3.0, s)} for s in (3, 4)],
             "USER (CGE)": [{"f30k1k": _eval(3.0, s)} for s in (5, 6)]}
    table = study.claims_table(board, "f30k1k").set_index("claim")
    assert list(table.index) == ["USER (SGE) over VSE∞", "USER (CGE) over USER (SGE)"]  # pairs present only
    gain = paired_bootstrap([b["f30k1k"] for b in board["USER (SGE)"]], [b["f30k1k"] for b in board["VSE∞"]],
                            samples=study.SAMPLES, level=study.LEVEL)
    row = table.loc["USER (SGE) over VSE∞"]
    assert row["our gain"] == pytest.approx(round(gain.difference, 1)) and row["significant"] == "yes"
    assert row["95% interval"] == f"[{gain.low:+.1f}, {gain.high:+.1f}]"
    paper = study.paper_gain(study.CLAIMS[1], "f30k1k")
    assert row["paper gain"] == pytest.approx(round(paper, 1))
    assert row["verdict"] == ("reproduced" if paper > 0 else "reversed")
    assert table.loc["USER (CGE) over USER (SGE)", "verdict"].startswith("not resolved")


def _run_folder(path, epochs: int, steps_per_epoch: int, seconds: float):
    path.mkdir(parents=True)
    records = []
    for epoch in range(epochs):
        step = (epoch + 1) * steps_per_epoch
        records += [{"event": "step", "epoch": epoch, "step": step, "loss": 1.0, "time": 0.0},
                    {"event": "val", "epoch": epoch, "step": step, "rsum": 100.0 + 10 * epoch, "time": 0.0,
                     "epoch_seconds": seconds}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_budget_curves_hold_every_epoch_of_every_seed(tmp_path):
    board = {}
    for e in study.ENTRIES:
        board[e.label] = [{"f30k1k": {"run": _run_folder(tmp_path / f"{e.run}-{s}", 2 + s, 9, 1.5)}}
                          for s in range(2)]
    frame = study.budget_frame(board)
    vse = frame[frame["method"] == study.REFERENCE]
    assert list(vse["seed"]) == [0, 0, 1, 1, 1] and list(vse["step"]) == [9, 18, 9, 18, 27]
    assert list(vse["rsum"]) == [100.0, 110.0, 100.0, 110.0, 120.0]
    assert study.curves_complete(frame, board)
    assert not study.curves_complete(frame[frame["seed"] == 0], board)
    figure = study.plot_budget_curves(frame, "curves")
    assert len(figure.axes[0].lines) == len(study.ENTRIES)
    assert study._epoch_seconds(board[study.REFERENCE][1]["f30k1k"]["run"]) == [1.5, 1.5, 1.5]


def test_main_table_adds_the_costs_beside_the_leaderboard():
    board = {"VSE∞": [{"f30k1k": _eval(1.0, s)} for s in (1, 2)], "AFA": [{"f30k1k": _eval(2.0, s)} for s in (3, 4)]}
    costs = pd.DataFrame({"method": ["VSE∞", "AFA"], "parameters": [10, 12], "train s/epoch": [1.0, 2.0],
                          "eval s": [0.1, 0.2]})
    table = study.main_table(board, "f30k1k", costs).set_index("method")
    assert table.loc["AFA", "parameters"] == 12 and table.loc["VSE∞", "train s/epoch"] == 1.0
    assert table.loc["AFA", "seeds"] == 2


def test_evaluation_seconds_add_the_timed_stages_only():
    timing = {"encode_s": 1.5, "score_s": 0.25, "rank_s": 0.25, "pairs_scored": 4000, "device": "cpu"}
    assert study.evaluation_seconds({"timing": timing}) == 2.0
    assert study.evaluation_seconds({}) == 0.0
