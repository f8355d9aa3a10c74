"""REPORT.md: assembled from a profile's written tables, figures and notebook timings."""

import json

import pandas as pd

from itrlib.suite.__main__ import main as suite_main
from itrlib.suite.report.report_md import errata, paper_differences, report_text
from itrlib.suite.report.tables import Caption, write_table

CAPTION = Caption(title="AFA beside the paper", protocol="f30k1k", data="synthetic (smoke)", images="40",
                  training="1 epoch, MiniLM", references="AFA Table 1")


def _table() -> pd.DataFrame:
    return pd.DataFrame([
        {"protocol": "f30k1k", "method": "AFA", "source": "itrlib (smoke)", "images": 40, "i2t R@1": 10.0,
         "rSum": 262.0},
        {"protocol": "f30k1k", "method": "VSE∞", "source": "itrlib (smoke)", "images": 40, "i2t R@1": 22.5,
         "rSum": 321.0},
        {"protocol": "f30k1k", "method": "AFA", "source": "AFA paper, Table 1", "images": 1000, "i2t R@1": 81.8,
         "rSum": 510.9}])


def test_each_of_our_rows_with_a_paper_row_gets_ours_the_papers_and_the_difference_per_metric():
    differences = paper_differences(_table())
    assert list(differences["method"]) == ["AFA"]  # VSE∞ has no paper row in this table
    row = differences.iloc[0]
    assert row["paper row"] == "AFA paper, Table 1" and row["protocol"] == "f30k1k"
    assert row["rSum: ours / paper (Δ)"] == "262.0 / 510.9 (-248.9)"
    assert row["i2t R@1: ours / paper (Δ)"] == "10.0 / 81.8 (-71.8)"
    assert paper_differences(_table().iloc[:2]).empty and paper_differences(_table().drop(columns="source")).empty


def test_errata_are_the_rows_whose_note_records_a_disagreement_in_the_paper():
    found = errata()
    assert ((found["paper"] == "USER") & (found["method"] == "VSE++") & (found["protocol"] == "5k")).any()
    assert found["note"].str.contains("SUM MISMATCH|typo|copy error").all()


def _outputs(root):
    out = root / "outputs" / "smoke"
    write_table(_table(), out / "tables" / "afa_tables_1_2", CAPTION)
    board = pd.DataFrame([{"method": "VSE∞", "seeds": 2, "rSum": 321.0}])
    write_table(board, out / "tables" / "leaderboard_f30k1k", CAPTION)
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "afa_vs_vse.png").write_bytes(b"png")
    (out / "notebooks").mkdir(parents=True)
    timings = {"notebooks": [{"notebook": "notebooks/00_vse.ipynb", "executed": "x", "started": "2026-01-01T00:00:00",
                              "seconds": 65.0, "ok": True}]}
    (out / "notebooks" / "timings.json").write_text(json.dumps(timings))
    return out


def test_the_report_puts_the_leaderboard_first_then_limits_pitfalls_tables_figures_and_times(tmp_path):
    _outputs(tmp_path)
    text = report_text("smoke", tmp_path)
    order = [text.index(h) for h in ("## Leaderboard", "## What this profile cannot support", "## Protocol pitfalls",
                                     "## Tables: ours beside the papers'", "## Figures", "## Errata",
                                     "## Wall time per notebook", "## Time per run")]
    assert order == sorted(order)
    assert "| VSE∞     |       2 |  321.0 |" in text  # the leaderboard's own Markdown
    assert "### [AFA beside the paper](tables/afa_tables_1_2.md)" in text
    assert "262.0 / 510.9 (-248.9)" in text and "[afa_vs_vse.png](figures/afa_vs_vse.png)" in text
    assert "wall time in their last execution 1 min 05 s" in text and "coco5k" in text.split("## Protocol pitfalls")[0]
    assert "No runs yet." in text


def test_the_report_command_writes_the_profiles_report(tmp_path, monkeypatch, capsys):
    out = _outputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert suite_main(["report", "--profile", "smoke"]) == 0
    assert (out / "REPORT.md").read_text().startswith("# itrlib report: profile `smoke`")
    assert "REPORT.md" in capsys.readouterr().out


def test_study_rows_are_marked_beyond_or_within_the_seed_spread_of_their_method():
    from itrlib.suite.report.report_md import seed_spread, spread_marks

    board = pd.DataFrame({"method": ["VSE∞", "AFA"], "rSum std": [3.0, 4.0]})
    ablation = pd.DataFrame({"variant": ["I", "I+II", "I", "I+II+III"],
                             "source": ["itrlib (smoke)", "itrlib (smoke)", "AFA paper, Table 3", "itrlib (smoke)"],
                             "rSum": [260.0, 255.0, 474.9, 240.0],
                             "caption_protocol": ["f30k1k = Flickr30K 1K test"] * 4})
    tables = {"leaderboard_f30k1k": board, "afa_table3": ablation}
    assert seed_spread(tables, "afa_table3", "f30k1k") == 4.0 and seed_spread(tables, "afa_table3", "coco1k") is None
    marks = spread_marks(ablation, "afa_table3", tables).set_index("variant")
    assert list(marks.index) == ["I", "I+II", "I+II+III"]  # ours only
    assert list(marks["vs best row"]) == [0.0, -5.0, -20.0]
    assert list(marks["beyond seed spread"]) == ["no", "no", "yes"]  # 2 x 4.0 = 8 points
    assert spread_marks(ablation, "afa_table3", {"afa_table3": ablation}).empty  # no leaderboard: no marks


def test_tables_of_several_methods_get_no_seed_spread_marks_and_each_board_precedes_its_claims(tmp_path):
    from itrlib.suite.report.report_md import spread_marks

    board = pd.DataFrame({"method": ["VSE∞", "AFA"], "rSum std": [3.0, 4.0]})
    comparison = _table()
    assert spread_marks(comparison, "afa_tables_1_2", {"leaderboard_f30k1k": board}).empty
    out = _outputs(tmp_path)
    claims = pd.DataFrame([{"claim": "AFA over VSE∞", "our gain": 1.0}])
    write_table(claims, out / "tables" / "leaderboard_claims_f30k1k", CAPTION)
    write_table(board, out / "tables" / "leaderboard_coco1k", CAPTION)
    text = report_text("smoke", tmp_path)
    assert text.index("| AFA over VSE∞") > text.index("| VSE∞     |       2 |  321.0 |")
    assert text.index("| AFA over VSE∞") > text.index("|   rSum std |")
