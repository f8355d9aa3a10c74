"""MVSEN Fig. 5 table: measured times stay visible when rounded."""

import pandas as pd

from itrlib.suite.studies.mvsen_timing import COLUMNS, rounded


def test_sub_millisecond_times_stay_positive_and_sums_stay_within_a_microsecond():
    row = {column: 0.0 for column in COLUMNS[3:]}
    fast = {**row, "model": "VSE∞", "images": 20, "captions": 100, "encode_s": 0.1234564, "match_s": 0.0004121,
            "total_s": 0.1238685}
    table = rounded(pd.DataFrame([fast], columns=COLUMNS))
    assert (table[["encode_s", "match_s", "total_s"]] > 0).all().all()
    assert abs(table["total_s"][0] - table["encode_s"][0] - table["match_s"][0]) <= 2e-6
