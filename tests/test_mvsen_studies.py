"""MVSEN studies: run names shared between notebooks, Table 4 rows, ensembles and sweep budgets."""

from itrlib.config import load_config
from itrlib.models.mvsen import ABLATION_ROWS, ENSEMBLE_ROWS
from itrlib.suite.studies import mvsen as study


def test_full_model_rows_are_the_direction_runs_without_a_sweep_budget():
    assert study.sweep_budget("smoke") == [] == study.sweep_budget("f30k")
    embedded = study.sweep_budget("embedded")
    assert {"train.epochs=1", f"train.max_steps_per_epoch={study.SWEEP_STEPS}"} <= set(embedded)
    assert f"{study.SWEEP_STEPS} steps of batch 64" in study.sweep_budget_text("embedded")
    assert study.ablation_run_name("#10 R+M+C t2i", "smoke") == "mvsen_t2i"
    assert study.ablation_run_name("#11 R+M+C i2t", "embedded") == "mvsen_i2t_sweep"
    assert study.ablation_run_name("#4 R+M t2i", "smoke") == "mvsen_table4_4"
    assert study.ablation_run_name("#12 R+M+C t2i+i2t", "smoke") == "mvsen_table4_12"


def test_every_ensemble_row_combines_one_row_of_each_direction_with_the_same_tasks():
    for row, (t2i, i2t) in ENSEMBLE_ROWS.items():
        assert t2i.endswith(" t2i") and i2t.endswith(" i2t")
        tasks = row.split()[1]
        assert t2i.split()[1] == i2t.split()[1] == tasks
        switches = [s for s in ABLATION_ROWS[t2i] if "direction" not in s]
        assert switches == [s for s in ABLATION_ROWS[i2t] if "direction" not in s]


def test_ablation_rows_switch_the_tasks_they_name():
    for row, overrides in ABLATION_ROWS.items():
        model = load_config("mvsen_smoke", overrides).model
        tasks = row.split()[1]
        assert model.text_matching == ("M" in tasks) and model.classification == ("C" in tasks)
        assert model.direction == row.split()[-1]


def test_sweeps_include_the_default_and_smoke_sweeps_one_direction():
    for sweep in (study.GCN_SWEEP, study.GAMMA_SWEEP):
        for profile in ("smoke", "embedded"):
            assert sweep.default(profile) in sweep.values_for(profile)
    assert study.sweep_directions("smoke") == ("t2i",) and study.sweep_directions("embedded") == ("t2i", "i2t")
