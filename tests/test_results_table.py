"""Ours-vs-paper table: our rows come from evaluation results, paper rows from the packaged CSV."""

from itrlib.report.results import comparison_table


def _result(n_images, folds, r1):
    metrics = {"i2t_r1": r1, "i2t_r5": 20, "i2t_r10": 30, "t2i_r1": 5, "t2i_r5": 6, "t2i_r10": 7, "rsum": r1 + 68}
    return {"n_images": n_images, "folds": [{}] * folds if folds > 1 else [], "metrics": metrics}


def test_comparison_table_rows_and_images():
    ours = {"AFA": {"coco1k": _result(500, 5, 10.04)}, "VSE∞": {"coco1k": _result(500, 5, 9.0)}}
    table = comparison_table(ours, [("USER", "VSE∞", "VSE∞"), ("USER", "no such", "x"), ("AFA", "Ours", "AFA")],
                             data="embedded")
    assert list(table["method"]) == ["AFA", "VSE∞", "VSE∞", "AFA"]
    assert list(table["source"]) == ["itrlib (embedded)"] * 2 + ["USER paper", "AFA paper"]
    assert list(table["images"]) == [100, 100, 1000, 1000]
    assert table.iloc[0]["i2t R@1"] == 10.0
    assert table.iloc[2]["rSum"] == 523.3  # USER Table I, VSE∞ on COCO 5-fold 1K
    assert table.iloc[3]["rSum"] == 526.1  # AFA Table 1, COCO 5-fold 1K


def test_variant_table_pairs_each_variant_with_the_paper_row():
    from itrlib.report.results import variant_table

    ours = {"I": {"f30k1k": _result(200, 1, 30.0)}, "I+II": {"f30k1k": _result(200, 1, 31.0)}}
    table = variant_table(ours, "f30k1k", "AFA", "Ours", {"I": "I", "I+II": "I+II"}, data="embedded")
    assert list(table["variant"]) == ["I", "I", "I+II", "I+II"]
    assert list(table["source"]) == ["itrlib (embedded)", "AFA paper"] * 2
    assert table.iloc[1]["rSum"] == 474.9 and table.iloc[3]["rSum"] == 492.4  # AFA Table 3
