"""USER studies: run naming shared between the notebooks, sweep values and defaults per profile, the Table
IV / Table V / Fig. 4-5 tables and captions, and the Fig. 6 trade-off reference (no training here)."""

import pytest
import yaml

from itrlib.models.user import ABLATION_ROWS
from itrlib.suite.studies.user import (
    BASELINE_ROW,
    BATCH_SWEEP,
    FULL_ROW,
    GAMMA_SWEEP,
    LAMBDA_SWEEP,
    MARGIN_SWEEP,
    QUEUE_SWEEP,
    REDUCED_ROWS,
    ablation_caption,
    ablation_rows,
    ablation_run_name,
    ablation_table,
    paper_points,
    paper_tradeoff,
    plot_ablation,
    plot_user_sweep,
    sweep_budget,
    sweep_caption,
    sweep_run_name,
    sweep_table,
    timing_sizes,
)

SWEEPS = (QUEUE_SWEEP, BATCH_SWEEP, GAMMA_SWEEP, MARGIN_SWEEP, LAMBDA_SWEEP)


def test_rows_i_and_vii_are_the_default_runs_and_every_other_row_has_its_own_folder():
    assert ablation_run_name(BASELINE_ROW, "embedded") == "vse_sweep"
    assert ablation_run_name(FULL_ROW, "embedded") == "user_sweep"
    assert ablation_run_name(BASELINE_ROW, "f30k") == "vse"  # real data: the sweeps keep the headline budget
    assert ablation_run_name(FULL_ROW, "f30k") == "user"
    names = [ablation_run_name(row, "embedded") for row in ablation_rows("embedded")]
    assert len(set(names)) == len(names) == 7
    assert ablation_rows("smoke") == list(REDUCED_ROWS) and set(REDUCED_ROWS) <= {BASELINE_ROW, *ABLATION_ROWS}


@pytest.mark.parametrize("profile", ["smoke", "embedded", "f30k", "coco"])
def test_each_sweep_holds_the_preset_default_and_valid_queue_batch_pairs(profile):
    for sweep in SWEEPS:
        values = sweep.values_for(profile)
        assert sweep.default(profile) in values and len(values) >= 2, sweep.field
        assert len({sweep_run_name(sweep, v) for v in values}) == len(values)
    queue, batch = QUEUE_SWEEP.default(profile), BATCH_SWEEP.default(profile)
    assert all(q % batch == 0 for q in QUEUE_SWEEP.values_for(profile))
    assert all(queue % b == 0 for b in BATCH_SWEEP.values_for(profile))


def test_sweep_budget_is_one_epoch_on_synthetic_data_and_the_papers_on_real_data():
    one_epoch = ["train.epochs=1", "train.lr_decay_epochs=[]", "train.keep_last=false"]
    assert sweep_budget("embedded") == one_epoch
    assert sweep_budget("smoke") == [*one_epoch, "train.max_steps_per_epoch=9"]  # make test's time
    assert sweep_budget("f30k") == sweep_budget("coco") == []


def test_table5_paper_points_and_figs_4_5_have_none():
    queue = paper_points(QUEUE_SWEEP)
    assert list(queue["parameter"]) == [512, 1024, 2048, 4096] and set(queue["dataset"]) == {"f30k"}
    assert queue.set_index("parameter").loc[2048, "value"] == pytest.approx(519.9)
    assert list(paper_points(BATCH_SWEEP)["parameter"]) == [32, 64, 128, 256]
    assert paper_points(GAMMA_SWEEP).empty and paper_points(LAMBDA_SWEEP).empty


def _result(rsum_offset, run):
    metrics = {"i2t_r1": 10.0 + rsum_offset, "i2t_r5": 20.0, "i2t_r10": 30.0, "t2i_r1": 5.0, "t2i_r5": 15.0,
               "t2i_r10": 25.0}
    return {"metrics": {**metrics, "rsum": sum(metrics.values())}, "run": str(run), "n_images": 200, "folds": [],
            "data_root": "data/synthetic"}


@pytest.fixture
def run(tmp_path):
    config = {"model": {"name": "user"}, "text": {"encoder": "bert", "bert_path": "minilm"},
              "train": {"epochs": 1, "batch_size": 128, "lr_decay_epochs": [], "lr_decay_factor": 0.1}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return tmp_path


def test_table4_caption_says_what_the_rows_are_and_the_sweep_budget(run):
    results = {row: {"f30k1k": _result(i, run)} for i, row in enumerate(ablation_rows("embedded"))}
    table = ablation_table(results, "embedded")
    assert list(table["variant"].unique()) == list(results)
    assert (table["source"] == "USER paper, Table IV").sum() == 7
    caption = ablation_caption(results, table, "embedded")
    assert "(I) VSE∞ with the VSE++ triplet loss" in caption.rows and "1 epoch at the initial lr" in caption.rows
    assert "1 epoch, batch size 128" in caption.training
    plot_ablation(table, results, "embedded")


def test_sweep_table_caption_and_figure(run):
    results = {v: {"f30k1k": _result(i, run)} for i, v in enumerate(QUEUE_SWEEP.values_for("embedded"))}
    table = sweep_table(QUEUE_SWEEP, results)
    assert list(table["model.queue_size"]) == [512, 2048, 4096]
    caption = sweep_caption(QUEUE_SWEEP, results, table, "embedded")
    assert "queue=1024: 514.7" in caption.references and "default 2048" in caption.rows
    margin = sweep_caption(MARGIN_SWEEP, {0.5: {"f30k1k": _result(0, run)}},
                           sweep_table(MARGIN_SWEEP, {0.5: {"f30k1k": _result(0, run)}}), "embedded")
    assert margin.references.startswith("none: the USER paper's Fig. 4 gives no values")
    plot_user_sweep(QUEUE_SWEEP, table, results, "embedded")


def test_fig6_sizes_and_the_papers_trade_off_points():
    assert timing_sizes("embedded") == {"f30k1k": (1000, 5000), "coco5k": (5000, 25000)}
    assert all(n <= 500 for sizes in timing_sizes("smoke").values() for n in sizes)
    tradeoff = paper_tradeoff().set_index("method")
    assert tradeoff.loc["USER (SGE)", "total_s"] == pytest.approx(10.8)
    assert tradeoff.loc["USER (SGE)", "rSum"] == pytest.approx(519.9)
    assert {"NAAF", "SGRAF", "SHAN"} <= set(tradeoff.index)
