"""The leaderboard: every method under one budget, over several seeds, each gain over a reference method with
its paired-bootstrap interval (:mod:`itrlib.evaluation.significance`) and whether that interval excludes 0."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from itrlib.evaluation.significance import paired_bootstrap

NOT_SIGNIFICANT = "no: the interval holds 0"


def leaderboard_table(runs: Mapping[str, Sequence[dict]], reference: str, *, samples: int = 2000,
                      level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per method of ``runs`` (``{method: [eval result of one protocol, one per seed]}``), best mean rSum
    first: seeds, rSum mean and standard deviation over the seeds, R@1 both ways, and against ``reference``
    the rSum difference of the means with its ``level`` bootstrap interval over the test images and a
    significance mark (empty for the reference itself)."""
    if reference not in runs:
        raise KeyError(f"reference method {reference!r} is not among {sorted(runs)}")
    percent = f"{round(100 * level)}%"
    rows = []
    for method, results in runs.items():
        rsums = np.array([r["metrics"]["rsum"] for r in results], dtype=float)
        row = {"method": method, "seeds": len(results), "rSum": rsums.mean(),
               "rSum std": rsums.std(ddof=1) if len(results) > 1 else np.nan,
               "i2t R@1": np.mean([r["metrics"]["i2t_r1"] for r in results]),
               "t2i R@1": np.mean([r["metrics"]["t2i_r1"] for r in results])}
        if method == reference:
            row |= {f"rSum vs {reference}": np.nan, f"{percent} interval": "", "significant": ""}
        else:
            gain = paired_bootstrap(results, runs[reference], samples=samples, level=level, seed=seed)
            row |= {f"rSum vs {reference}": gain.difference,
                    f"{percent} interval": f"[{gain.low:+.1f}, {gain.high:+.1f}]",
                    "significant": "yes" if gain.significant else NOT_SIGNIFICANT}
        rows.append(row)
    return pd.DataFrame(rows).sort_values("rSum", ascending=False, kind="stable").reset_index(drop=True)
