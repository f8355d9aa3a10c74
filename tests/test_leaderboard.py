"""The leaderboard table: means over seeds, the gain over the reference and its significance mark."""

import math

import numpy as np
import pytest

from itrlib.evaluation.ranking import evaluate_scores
from itrlib.evaluation.significance import paired_bootstrap
from itrlib.suite.report.leaderboard import NOT_SIGNIFICANT, leaderboard_table


def _eval(signal: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((60, 300))
    scores[np.arange(300) // 5, np.arange(300)] += signal
    return evaluate_scores(scores, "f30k1k")


def test_rows_hold_seed_means_and_the_gain_over_the_reference_with_its_mark():
    runs = {"VSE∞": [_eval(1.0, s) for s in (1, 2, 3)], "strong": [_eval(3.0, s) for s in (4, 5, 6)],
            "same": [_eval(1.0, s) for s in (7, 8, 9)]}
    table = leaderboard_table(runs, "VSE∞", samples=300)
    assert table["method"].iloc[0] == "strong" and set(table["method"]) == set(runs)
    row = table.set_index("method").loc["strong"]
    rsums = [r["metrics"]["rsum"] for r in runs["strong"]]
    assert row["seeds"] == 3 and row["rSum"] == pytest.approx(np.mean(rsums))
    assert row["rSum std"] == pytest.approx(np.std(rsums, ddof=1))
    gain = paired_bootstrap(runs["strong"], runs["VSE∞"], samples=300)
    assert row["rSum vs VSE∞"] == pytest.approx(gain.difference) and row["significant"] == "yes"
    assert row["95% interval"] == f"[{gain.low:+.1f}, {gain.high:+.1f}]"
    assert table.set_index("method").loc["same", "significant"] == NOT_SIGNIFICANT
    reference = table.set_index("method").loc["VSE∞"]
    assert math.isnan(reference["rSum vs VSE∞"]) and reference["significant"] == ""


def test_one_seed_has_no_spread_and_an_unknown_reference_is_named():
    table = leaderboard_table({"a": [_eval(1.0, 1)], "b": [_eval(2.0, 2)]}, "a", samples=100)
    assert table["rSum std"].isna().all()
    with pytest.raises(KeyError, match="'c' is not among"):
        leaderboard_table({"a": [_eval(1.0, 1)]}, "c")
