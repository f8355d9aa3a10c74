"""Packaged paper numbers and result tables."""

import dataclasses
import math

import pandas as pd
import pytest

from itrlib.suite.report import (
    STANDARD_COLUMNS,
    Caption,
    format_frame,
    load_reference,
    markdown_table,
    metrics_frame,
    paper_numbers,
    paper_row,
    paper_source,
    paper_sweep,
    paper_sweep_note,
    write_table,
)
from itrlib.suite.report import paper as paper_module


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


CAPTION = Caption(title="VSE++ beside the AFA paper", protocol="f30k1k = Flickr30K 1K test",
                  data="itrlib rows: embedded synthetic data; paper rows: real Flickr30K",
                  images="f30k1k: itrlib 200, papers 1,000", training="4 epochs, batch size 128, text encoder MiniLM",
                  references="VSE++ (f30k1k) as reported in the AFA paper, Table 1")


def test_write_table(tmp_path):
    df = metrics_frame([{"method": "VSE++", **paper_row("AFA", "f30k", "1k", "VSE++")}])
    paths = write_table(df, tmp_path / "sub" / "table1", CAPTION)
    assert paths == {s: tmp_path / "sub" / f"table1.{s}" for s in ("md", "csv", "tex")}
    md = paths["md"].read_text()
    assert md.splitlines()[0] == CAPTION.markdown() and "| VSE++" in md and "52.9" in md
    csv = pd.read_csv(paths["csv"])
    pd.testing.assert_frame_equal(csv[list(df.columns)], df)
    assert csv.loc[0, "caption_references"] == CAPTION.references and csv.loc[0, "caption_images"] == CAPTION.images
    tex = paths["tex"].read_text()
    assert "\\toprule" in tex and "52.9" in tex
    assert "\\caption{VSE++ beside the AFA paper. Protocol: f30k1k" in tex and "Table 1" in tex


def test_write_table_needs_a_caption(tmp_path):
    df = metrics_frame([{"method": "a", "rsum": 1.0}])
    with pytest.raises(TypeError):
        write_table(df, tmp_path / "t")  # no caption: no table
    with pytest.raises(TypeError, match="Caption"):
        write_table(df, tmp_path / "t", "a caption as a bare string")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("item", ["title", "protocol", "data", "images", "training", "references"])
def test_a_caption_missing_a_required_item_is_refused(item):
    with pytest.raises(ValueError, match=item):
        dataclasses.replace(CAPTION, **{item: "  "})


def test_caption_lines_hold_every_item():
    with_rows = dataclasses.replace(CAPTION, rows="(I) MLP + mean pooling + VSE++ loss")
    for text in (with_rows.text(), with_rows.markdown()):
        for label, item in (("Protocol", with_rows.protocol), ("Data", with_rows.data),
                            ("Test images per evaluation", with_rows.images), ("Training", with_rows.training),
                            ("Reference rows", with_rows.references), ("Rows", with_rows.rows)):
            assert label in text and item in text
    assert "Rows" not in CAPTION.text()


def test_display_and_file_round_alike(tmp_path):
    """The notebook showed 78 / 98 / 464 beside 51.5: a round recall or rSum must show one decimal everywhere."""
    df = metrics_frame([{"protocol": "coco1k", "method": "VSE∞", "images": 100, "i2t_r1": 78.0, "i2t_r5": 98.0,
                         "rsum": 464.0}, {"protocol": "coco1k", "method": "x", "images": 1000, "i2t_r1": 51.46}])
    shown = markdown_table(df, CAPTION)
    paths = write_table(df, tmp_path / "t", CAPTION)
    assert paths["md"].read_text() == shown + "\n"
    rows = [line for line in shown.splitlines() if line.startswith("| coco1k")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0][2:] == ["100", "78.0", "98.0", "–", "–", "–", "–", "464.0"]
    assert cells[1][2:4] == ["1000", "51.5"]
    assert format_frame(df).loc[0, "rSum"] == "464.0"
    tex_row = next(line for line in paths["tex"].read_text().splitlines() if line.startswith("coco1k & VSE"))
    assert "78.0 & 98.0 & -- " in tex_row and tex_row.rstrip(" \\").endswith("464.0")


def test_write_table_keeps_float_labels_exact(tmp_path):
    df = metrics_frame([{"merge_ratio": r, "rsum": 400.04 + i} for i, r in enumerate((0.125, 0.375))])
    paths = write_table(df, tmp_path / "sweep", CAPTION)
    for suffix in ("md", "tex"):
        text = paths[suffix].read_text()
        assert "0.125" in text and "0.375" in text and "400.0" in text and "401.0" in text
    pd.testing.assert_frame_equal(pd.read_csv(paths["csv"])[list(df.columns)], df)


def test_paper_source_names_the_table():
    assert paper_source("USER", "coco", "5fold1k", "VSE∞") == "USER paper, Table I"
    assert paper_source("USER", "f30k", "1k", "VSE∞") == "USER paper, Table III"
    assert paper_source("AFA", "f30k", "1k", "Ours") == "AFA paper, Table 1"
    assert paper_source("AFA", "f30k", "1k", "Ours", "I+II") == "AFA paper, Table 3"
    with pytest.raises(KeyError):
        paper_source("AFA", "f30k", "1k", "No Such Method")


def test_paper_sweep_is_empty_for_afa_fig3_and_reads_points_when_the_csv_has_them(monkeypatch):
    assert paper_sweep("AFA", "Fig. 3", "k").empty
    assert "Top-k" in paper_sweep_note("AFA", "Fig. 3")
    frame = load_reference("paper_tables.csv")
    points = pd.DataFrame([{"paper": "AFA", "table": "Fig. 3", "dataset": "f30k", "protocol": "1k", "method": "Ours",
                            "variant": f"k={k}", "metric": "rsum", "value": str(500.0 + k), "note": ""}
                           for k in (0, 9, 18)])
    monkeypatch.setattr(paper_module, "load_reference", lambda name: pd.concat([frame, points]))
    sweep = paper_sweep("AFA", "Fig. 3", "k")
    assert list(sweep["parameter"]) == [0.0, 9.0, 18.0] and list(sweep["value"]) == [500.0, 509.0, 518.0]
    assert set(sweep["source"]) == {"AFA paper, Fig. 3"}


def test_metric_bars_label_every_bar_and_leave_missing_values_unlabelled():
    from itrlib.suite.report.plots import plot_metric_bars

    table = pd.DataFrame({"variant": ["I", "I", "extra"], "source": ["ours", "paper", "ours"],
                          "rSum": [440.5, 474.9, 157.4]})
    fig = plot_metric_bars(table, group="variant", hue="source")
    labels = sorted(text.get_text() for text in fig.axes[0].texts if text.get_text())
    assert labels == ["157.4", "440.5", "474.9"]  # the paper has no "extra" row: no bar label "0.0"
    assert fig.axes[0].get_xlabel() == "variant"


def _bar_labels(ax):
    return sorted(text.get_text() for text in ax.texts if text.get_text())


def test_ours_and_the_paper_get_separate_panels_with_their_settings():
    from itrlib.suite.report.plots import NOT_COMPARABLE, plot_ours_beside_paper

    table = pd.DataFrame({"variant": ["I", "I", "extra"], "source": ["itrlib (smoke)", "AFA paper, Table 3",
                                                                      "itrlib (smoke)"], "rSum": [440.5, 474.9, 157.4]})
    fig = plot_ours_beside_paper(table, group="variant", hue="source", ours_title="itrlib — embedded synthetic data",
                                 paper_title="AFA paper, Table 3 — real Flickr30K", note="(I) MLP + mean pooling")
    ours, paper = fig.axes[:2]
    assert _bar_labels(ours) == ["157.4", "440.5"] and _bar_labels(paper) == ["474.9"]
    assert "embedded synthetic" in ours.get_title() and "real Flickr30K" in paper.get_title()
    assert NOT_COMPARABLE.split(":")[0] in fig.get_suptitle()
    assert "(I) MLP" in fig.get_supxlabel()


def test_a_panel_without_paper_rows_says_so():
    from itrlib.suite.report.plots import plot_ours_beside_paper

    table = pd.DataFrame({"protocol": ["f30k1k"], "method": ["a"], "source": ["itrlib (smoke)"], "rSum": [300.0]})
    fig = plot_ours_beside_paper(table, group="protocol", hue="method", ours_title="ours", paper_title="")
    assert any("reports no values" in t.get_text() for t in fig.axes[1].texts)


def _curves():
    steps = pd.DataFrame({"epoch": [0, 0, 1, 1, 2, 2, 3, 3], "step": [5, 10, 15, 20, 25, 30, 35, 40],
                          "loss": [900.0, 800.0, 50.0, 45.0, 40.0, 38.0, 30.0, 29.0]})
    val = pd.DataFrame({"epoch": [0, 1, 2, 3], "step": [10, 20, 30, 40], "rsum": [300.0, 310.0, 330.0, 360.0],
                        "i2t_r1": [10.0, 11.0, 12.0, 13.0], "t2i_r1": [8.0, 9.0, 10.0, 11.0]})
    return steps, val


def test_training_curves_number_epochs_from_zero_and_mark_the_schedule():
    from itrlib.suite.report.plots import plot_training_curves

    fig = plot_training_curves(*_curves(), title="t", hardest_from_epoch=1, lr_decay_epochs=[3], lr_decay_factor=0.1)
    ax_loss, ax_val = fig.axes[0], fig.axes[1]
    assert list(ax_val.lines[0].get_xdata()) == [0, 1, 2, 3]  # 0-based, as train.lr_decay_epochs counts
    verticals = [line.get_xdata()[0] for line in ax_val.lines[1:]]
    assert verticals == [0.5, 2.5]  # between epochs 0|1 (warm-up ends) and 2|3 (lr decay)
    assert [line.get_xdata()[0] for line in ax_loss.lines[1:]] == [10.5, 30.5]  # after the last step of epoch 0/2
    for ax in (ax_loss, ax_val):
        texts = [t.get_text() for t in ax.texts]
        assert "hardest negative from epoch 1" in texts and "lr ×0.1 from epoch 3" in texts
    note = fig.get_supxlabel()
    assert "numbered from 0" in note and "model.mean_warmup_epochs = 1" in note and "hardest negative" in note


def test_training_curves_without_a_warm_up_mark_nothing():
    from itrlib.suite.report.plots import plot_training_curves

    fig = plot_training_curves(*_curves())
    assert len(fig.axes[1].lines) == 1 and not fig.axes[0].texts


def test_sweep_marks_the_default_and_gives_the_paper_its_own_panel():
    from itrlib.suite.report.plots import plot_sweep

    frame = pd.DataFrame({"k": [0, 9, 0, 9], "protocol": ["f30k1k", "f30k1k", "coco1k", "coco1k"],
                          "rSum": [220.5, 261.0, 399.2, 418.8]})
    empty = pd.DataFrame(columns=["parameter", "value", "dataset", "protocol", "source"])
    fig = plot_sweep(frame, x="k", xlabel="merged pairs k (of 36 regions)", default=9, default_label="default k = 9",
                     paper=empty, paper_title="AFA paper, Fig. 3", paper_note="only the trend")
    ours, paper = fig.axes[:2]
    assert ours.get_xlabel() == "merged pairs k (of 36 regions)"
    assert any(t.get_text() == "default k = 9" for t in ours.texts)
    assert [line.get_xdata()[0] for line in ours.lines if len(line.get_xdata()) == 2 and line.get_linestyle() == "--"]
    assert not paper.lines and any("gives no values" in t.get_text() for t in paper.texts)
    points = pd.DataFrame({"parameter": [0.0, 9.0], "value": [500.0, 510.9], "protocol": ["1k", "1k"]})
    fig = plot_sweep(frame, x="k", paper=points, paper_title="AFA paper, Fig. 3")
    assert list(fig.axes[1].lines[0].get_ydata()) == [500.0, 510.9]
