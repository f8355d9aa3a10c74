"""Packaged paper numbers and result tables."""

import math

import pandas as pd
import pytest

from itrlib.report import (
    STANDARD_COLUMNS,
    load_reference,
    metrics_frame,
    paper_numbers,
    paper_row,
    write_table,
)
from itrlib.report import paper as paper_module


def test_reference_files_are_packaged():
    for name in ("paper_tables.csv", "paper_timings.csv", "paper_sweeps_text.csv"):
        assert not load_reference(name).empty
    assert set(load_reference("paper_tables.csv")["paper"]) == {"AFA", "USER", "MVSEN"}


def test_paper_numbers_filters():
    rows = paper_numbers("AFA", table="Table 1", dataset="f30k", protocol="1k")
    assert not rows.empty
    assert set(rows["table"]) == {"Table 1"} and set(rows["dataset"]) == {"f30k"}
    assert rows["value"].dtype == float
    assert not rows.duplicated(["method", "variant", "metric"]).any()
    with pytest.raises(KeyError, match="AFA, MVSEN, USER"):
        paper_numbers("SCAN")


def test_paper_row_gives_all_seven_metrics():
    row = paper_row("AFA", "f30k", "1k", "VSE++")
    assert row == {"i2t_r1": 52.9, "i2t_r5": 80.5, "i2t_r10": 87.2, "t2i_r1": 39.6,
                   "t2i_r5": row["t2i_r5"], "t2i_r10": row["t2i_r10"], "rsum": row["rsum"]}
    user = paper_row("USER", "f30k", "1k", "USER (SGE)")
    assert user["rsum"] == pytest.approx(sum(v for k, v in user.items() if k != "rsum"), abs=0.15)


def test_paper_row_errors_are_helpful():
    with pytest.raises(KeyError, match=r"only for variants .*II UTO"):
        paper_row("USER", "f30k", "1k", "USER")
    with pytest.raises(KeyError, match="available dataset/protocol/method"):
        paper_row("AFA", "f30k", "1k", "No Such Method")


def test_paper_row_deduplicates_and_rejects_conflicts(monkeypatch):
    frame = load_reference("paper_tables.csv")
    one = frame[(frame["paper"] == "AFA") & (frame["method"] == "VSE++") & (frame["dataset"] == "f30k")]
    repeated = pd.concat([frame, one.assign(table="Table 9")])
    monkeypatch.setattr(paper_module, "load_reference", lambda name: repeated.copy())
    assert paper_row("AFA", "f30k", "1k", "VSE++")["i2t_r1"] == 52.9
    conflicting = pd.concat([frame, one.assign(table="Table 9", value="1.0")])
    monkeypatch.setattr(paper_module, "load_reference", lambda name: conflicting.copy())
    with pytest.raises(ValueError, match="Table 9"):
        paper_row("AFA", "f30k", "1k", "VSE++")


def test_metrics_frame_columns_and_rounding():
    rows = [{"method": "a", "i2t_r1": 52.94, "i2t_r5": 80.5, "i2t_r10": 87.2, "t2i_r1": 39.66, "t2i_r5": 70.1,
             "t2i_r10": 79.5, "rsum": 409.9, "i2t_medr": 1.0},
            {"method": "b", "i2t_r1": 10.0}]
    df = metrics_frame(rows)
    assert list(df.columns) == ["method", *STANDARD_COLUMNS.values()]
    assert df.loc[0, "i2t R@1"] == 52.9 and df.loc[0, "t2i R@1"] == 39.7
    assert math.isnan(df.loc[1, "rSum"])


def test_write_table(tmp_path):
    df = metrics_frame([{"method": "VSE++", **paper_row("AFA", "f30k", "1k", "VSE++")}])
    paths = write_table(df, tmp_path / "sub" / "table1")
    assert paths == {s: tmp_path / "sub" / f"table1.{s}" for s in ("md", "csv", "tex")}
    assert "| VSE++" in paths["md"].read_text() and "52.9" in paths["md"].read_text()
    pd.testing.assert_frame_equal(pd.read_csv(paths["csv"]), df)
    tex = paths["tex"].read_text()
    assert "\\toprule" in tex and "52.9" in tex


def test_write_table_keeps_float_labels_exact(tmp_path):
    df = metrics_frame([{"merge_ratio": r, "rsum": 400.04 + i} for i, r in enumerate((0.125, 0.375))])
    paths = write_table(df, tmp_path / "sweep")
    for suffix in ("md", "tex"):
        text = paths[suffix].read_text()
        assert "0.125" in text and "0.375" in text and "400.0" in text and "401.0" in text
    pd.testing.assert_frame_equal(pd.read_csv(paths["csv"]), df)


def test_metric_bars_label_every_bar_and_leave_missing_values_unlabelled():
    from itrlib.report.plots import plot_metric_bars

    table = pd.DataFrame({"variant": ["I", "I", "extra"], "source": ["ours", "paper", "ours"],
                          "rSum": [440.5, 474.9, 157.4]})
    fig = plot_metric_bars(table, group="variant", hue="source")
    labels = sorted(text.get_text() for text in fig.axes[0].texts if text.get_text())
    assert labels == ["157.4", "440.5", "474.9"]  # the paper has no "extra" row: no bar label "0.0"
    assert fig.axes[0].get_xlabel() == "variant"
