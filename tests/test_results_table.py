"""Ours-vs-paper table: our rows come from evaluation results, paper rows from the packaged CSV."""

from itrlib.report.results import comparison_table


def test_comparison_table_rows_and_images():
    results = {"coco1k": {"n_images": 500, "folds": [{}] * 5,
                          "metrics": {"i2t_r1": 10.04, "i2t_r5": 20, "i2t_r10": 30, "t2i_r1": 5, "t2i_r5": 6,
                                      "t2i_r10": 7, "rsum": 78.04}}}
    table = comparison_table(results, ours="VSE∞", paper_methods=[("USER", "VSE∞"), ("USER", "no such")],
                             data="embedded")
    assert list(table["source"]) == ["itrlib (embedded)", "USER paper"]
    assert list(table["images"]) == [100, 1000]
    assert table.iloc[0]["i2t R@1"] == 10.0
    assert table.iloc[1]["rSum"] == 523.3  # USER Table I, VSE∞ on COCO 5-fold 1K
