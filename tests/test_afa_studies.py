"""AFA studies: run naming shared with notebook 01, sweep ratios per profile, the Fig. 3 table, and the
captions and figures of Table 3 and Fig. 3."""

import pandas as pd
import pytest
import yaml

from itrlib.models.afa import ABLATION_ROWS, TOPK_RATIOS, AFAConfig
from itrlib.suite.profiles import get_profile, run_config
from itrlib.suite.report.results import variant_table
from itrlib.suite.studies import afa as afa_module
from itrlib.suite.studies.afa import (
    K_AXIS,
    PRINTED_EQ7_ROW,
    STUDY_EPOCH_STEPS,
    ablation_caption,
    ablation_rows,
    ablation_run_name,
    default_k,
    fig3_paper_points,
    fig3_reference,
    plot_ablation,
    plot_topk_sweep,
    study_budget,
    sweep_ratios,
    topk_caption,
    topk_run_name,
    topk_sweep_table,
)


def test_full_model_is_the_shared_afa_run_and_other_rows_get_their_own_folders():
    rows = ablation_rows()
    assert set(ABLATION_ROWS) < set(rows) and rows[PRINTED_EQ7_ROW] == ["model.mixed_positive=real"]
    for profile, full, eq7 in [("f30k", "afa", "afa_eq7_printed"), ("coco", "afa", "afa_eq7_printed"),
                               ("embedded", "afa_sweep", "afa_eq7_printed_sweep"),
                               ("smoke", "afa_sweep", "afa_eq7_printed_sweep")]:
        names = {row: ablation_run_name(row, profile) for row in rows}
        assert names["I+II+III+IV"] == full and names[PRINTED_EQ7_ROW] == eq7, profile
        assert len(set(names.values())) == len(names)
        assert topk_run_name(AFAConfig.merge_ratio, profile) == full
        assert len({topk_run_name(r, profile) for r in TOPK_RATIOS}) == len(TOPK_RATIOS)


def _budget(profile: str) -> tuple[int, int | None, list[int], bool, int]:
    """(epochs, max_steps_per_epoch, lr_decay_epochs, keep_last, first hardest-negative epoch) of a study run."""
    config = run_config("afa", profile, name="study", overrides=study_budget(profile))
    train = config.train
    return train.epochs, train.max_steps_per_epoch, train.lr_decay_epochs, train.keep_last, \
        config.model.mean_warmup_epochs


def test_study_runs_train_a_short_budget_on_synthetic_data_only():
    assert study_budget("f30k") == [] == study_budget("coco")
    assert _budget("smoke") == (1, get_profile("smoke").study_steps, [], False, 1)
    # embedded: the warm-up epoch and one hardest-negative epoch, both short, no lr decay
    epochs, steps, decay, keep_last, hardest_from = _budget("embedded")
    assert (epochs, steps, decay, keep_last) == (2, STUDY_EPOCH_STEPS, [], False) and hardest_from == 1
    headline = run_config("afa", "embedded").train
    assert headline.epochs > epochs and headline.max_steps_per_epoch is None


def test_smoke_sweeps_two_points_and_other_profiles_the_whole_range():
    assert sweep_ratios("smoke") == (0.0, AFAConfig.merge_ratio)
    assert sweep_ratios("embedded") == TOPK_RATIOS


def _result(rsum_offset, run=None, n_images=200, folds=1):
    metrics = {"i2t_r1": 10.0 + rsum_offset, "i2t_r5": 20.0, "i2t_r10": 30.0, "t2i_r1": 5.0, "t2i_r5": 15.0,
               "t2i_r10": 25.0}
    return {"metrics": {**metrics, "rsum": sum(metrics.values())}, "run": str(run), "n_images": n_images,
            "folds": [{}] * folds if folds > 1 else [], "data_root": "data/synthetic"}


@pytest.fixture
def run(tmp_path):
    config = {"model": {"name": "afa", "max_violation": True, "mean_warmup_epochs": 1},
              "text": {"encoder": "bert", "bert_path": "minilm"},
              "train": {"epochs": 4, "batch_size": 128, "lr_decay_epochs": [3], "lr_decay_factor": 0.1}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return tmp_path


def test_default_k_is_9_of_36_regions():
    assert AFAConfig.merge_ratio == 0.25 and default_k() == 9
    assert K_AXIS == "merged pairs k (of 36 regions)"


def test_table3_caption_and_figure_say_what_rows_i_to_iv_are(run):
    by_row = {row: {"f30k1k": _result(i, run), "coco1k": _result(i, run, 500, 5)}
              for i, row in enumerate(ablation_rows())}
    table = variant_table(by_row, "f30k1k", "AFA", "Ours", {row: row for row in ABLATION_ROWS}, data="embedded")
    caption = ablation_caption(by_row, table, "f30k1k", "embedded")
    for text in ("(I) MLP + mean pooling + VSE++ loss", "(II) + feature aggregation",
                 "(III) mean → dimension-wise max selection", "(IV) + harder-negative loss = full AFA",
                 "eq. 7 as printed"):
        assert text in caption.rows
    assert "as reported in the AFA paper, Table 3" in caption.references
    assert caption.images == "f30k1k: itrlib 200, papers 1,000"
    fig = plot_ablation(table, by_row, "f30k1k", "embedded")
    ours, paper = fig.axes[:2]
    assert "embedded synthetic data" in ours.get_title() and "AFA paper, Table 3" in paper.get_title()
    assert "(IV) + harder-negative loss" in fig.get_supxlabel()


def test_fig3_has_no_paper_values_and_says_so(run):
    assert fig3_paper_points().empty
    assert fig3_reference().startswith("none: the AFA paper's Fig. 3 gives no values, only the trend")
    results = {r: {"f30k1k": _result(i, run), "coco1k": _result(i, run, 500, 5)} for i, r in enumerate(TOPK_RATIOS)}
    table = topk_sweep_table(results)
    caption = topk_caption(results, table, "embedded")
    assert caption.references == fig3_reference()
    assert "coco1k: itrlib 100 per fold (5 folds averaged)" in caption.images
    fig = plot_topk_sweep(table, results, "embedded")
    ours, paper = fig.axes[:2]
    assert ours.get_xlabel() == K_AXIS
    assert any(t.get_text().startswith("default k = 9") for t in ours.texts)
    assert not paper.lines and any("gives no values" in t.get_text() for t in paper.texts)


def test_fig3_paper_values_would_be_plotted_in_their_own_panel(run, monkeypatch):
    points = pd.DataFrame({"parameter": [0.0, 9.0, 18.0], "value": [500.0, 510.9, 505.0],
                           "dataset": ["f30k"] * 3, "protocol": ["1k"] * 3, "source": ["AFA paper, Fig. 3"] * 3})
    monkeypatch.setattr(afa_module, "paper_sweep", lambda *args, **kwargs: points)
    results = {r: {"f30k1k": _result(i, run)} for i, r in enumerate(TOPK_RATIOS)}
    table = topk_sweep_table(results)
    assert fig3_reference() == "the AFA paper's curve: AFA paper, Fig. 3"
    paper = plot_topk_sweep(table, results, "embedded").axes[1]
    assert list(paper.lines[0].get_xdata()) == [0.0, 9.0, 18.0]


def test_topk_table_has_a_row_per_ratio_and_protocol_with_k_of_36_regions():
    results = {r: {"f30k1k": _result(i), "coco1k": _result(2 * i)} for i, r in enumerate(TOPK_RATIOS)}
    table = topk_sweep_table(results)
    assert len(table) == 2 * len(TOPK_RATIOS)
    f30k = table[table["protocol"] == "f30k1k"]
    assert list(f30k["k (36 regions)"]) == [0, 4, 9, 13, 18]
    assert list(f30k["rSum"]) == pytest.approx([105.0 + i for i in range(len(TOPK_RATIOS))])
