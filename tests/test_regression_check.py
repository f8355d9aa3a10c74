"""The notebooks' regression check: the smoke rSums printed by the nbval-checked cells, their committed values,
and a broken model that the check catches."""

import copy
import json
from pathlib import Path

import nbformat
import pytest
import torch

import itrlib.models.vse as vse
from itrlib.errors import ItrlibError
from itrlib.experiments import train_and_evaluate
from itrlib.losses.triplet import triplet_loss
from itrlib.profiles import CODE_STAMP, code_fingerprint, get_profile, prepare_run_dir, run_config
from itrlib.regression import (
    compare,
    expected_from_notebook,
    is_checked,
    parse_summary,
    refresh_outputs,
    rsum_by_method,
    smoke_summary,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [ROOT / "notebooks" / name for name in ("00_baseline.ipynb", "afa/01_train_eval.ipynb",
                                                    "afa/02_ablation.ipynb", "afa/03_topk_sweep.ipynb")]
BASELINE_NOTEBOOK = NOTEBOOKS[0]


def _result(rsum: float) -> dict:
    return {"metrics": {"rsum": rsum}}


def test_summary_lines_parse_back_to_the_rounded_rsums():
    results = {"VSE∞": {"f30k1k": _result(231.4500001), "coco1k": _result(402.0)},
               "AFA (eq. 7 as printed)": {"f30k1k": _result(99.94999)}}
    summary = smoke_summary(results)
    assert summary.splitlines() == ["VSE∞ f30k1k rSum 231.5", "VSE∞ coco1k rSum 402.0",
                                    "AFA (eq. 7 as printed) f30k1k rSum 99.9"]
    assert parse_summary(f"table files: ['.csv']\n{summary}\nfigure written: True") == rsum_by_method(results)


def test_compare_reports_differences_beyond_the_tolerance_and_one_sided_values():
    expected = {("VSE∞", "f30k1k"): 300.0, ("VSE∞", "coco1k"): 450.0, ("AFA", "f30k1k"): 250.0}
    measured = {("VSE∞", "f30k1k"): 300.4, ("VSE∞", "coco1k"): 420.0, ("AFA", "coco1k"): 1.0}
    assert compare(measured, expected, tolerance=0.5) == [
        "VSE∞ coco1k: rSum 420.0, expected 450.0 (-30.0)",
        "AFA f30k1k: not measured (expected rSum 250.0)",
        "AFA coco1k: rSum 1.0 has no expected value",
    ]
    assert compare(expected, expected) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_hold_expected_smoke_values_and_default_parameters(path):
    expected = expected_from_notebook(path)
    assert expected and {protocol for _, protocol in expected} == set(get_profile("smoke").protocols)
    notebook = nbformat.read(path, as_version=4)
    tags = [tag for cell in notebook.cells for tag in cell.metadata.get("tags", [])]
    assert "injected-parameters" not in tags and tags.count("parameters") == 1
    parameters = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    assert parameters.source.startswith('profile = "embedded"')
    assert all(not cell.outputs and cell.execution_count is None
               for cell in notebook.cells if cell.cell_type == "code" and not is_checked(cell))


def _executed(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What papermill makes of ``notebook``: an injected-parameters cell, outputs, counts and metadata."""
    executed = copy.deepcopy(notebook)
    position = next(i for i, cell in enumerate(executed.cells) if "parameters" in cell.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell('profile = "smoke"\n', metadata={"tags": ["injected-parameters"]})
    executed.cells.insert(position + 1, injected)
    for count, cell in enumerate(c for c in executed.cells if c.cell_type == "code"):
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"cell {count}\n")]
        cell.execution_count = count + 1
        cell.metadata["papermill"] = {"start_time": "2030-01-01T00:00:00"}
    return executed


def test_refresh_copies_only_the_checked_outputs_into_the_committed_cells(tmp_path):
    committed = tmp_path / "00_baseline.ipynb"
    committed.write_bytes(BASELINE_NOTEBOOK.read_bytes())
    notebook = nbformat.read(committed, as_version=4)
    executed = _executed(notebook)
    nbformat.write(executed, tmp_path / "executed.ipynb")
    refresh_outputs(tmp_path / "executed.ipynb", committed)
    refreshed = nbformat.read(committed, as_version=4)
    assert [cell.source for cell in refreshed.cells] == [cell.source for cell in notebook.cells]
    assert [cell.metadata for cell in refreshed.cells] == [cell.metadata for cell in notebook.cells]
    checked = [cell for cell in refreshed.cells if is_checked(cell)]
    ran = next(cell for cell in executed.cells if is_checked(cell))
    assert len(checked) == 1 and (checked[0].outputs, checked[0].execution_count) == (ran.outputs, ran.execution_count)
    assert all(not cell.get("outputs") and cell.get("execution_count") is None
               for cell in refreshed.cells if not is_checked(cell))


def test_refresh_refuses_an_execution_of_another_notebook(tmp_path):
    committed = tmp_path / "00_baseline.ipynb"
    committed.write_bytes(BASELINE_NOTEBOOK.read_bytes())
    with pytest.raises(ItrlibError, match="is not an execution of"):
        refresh_outputs(NOTEBOOKS[1], committed)


def test_smoke_runs_are_shared_only_with_the_code_that_trained_them(tmp_path):
    config = run_config("baseline", "smoke", overrides=[f"output_dir={tmp_path}"])
    run_dir = prepare_run_dir(config, "smoke")
    assert (run_dir / CODE_STAMP).read_text(encoding="utf-8") == code_fingerprint()
    (run_dir / "best.pt").write_text("trained by this code")
    assert (prepare_run_dir(config, "smoke") / "best.pt").is_file()
    (run_dir / CODE_STAMP).write_text("an older code version")
    assert not (prepare_run_dir(config, "smoke") / "best.pt").exists()


def _loss_ignoring_positives(scores: torch.Tensor, margin: float = 0.2, hardest: bool = True,
                             positives: torch.Tensor | None = None) -> torch.Tensor:
    """A plausible bug: the triplet loss with every positive score taken as 0 (matching pairs never pulled)."""
    return triplet_loss(scores, margin, hardest, positives=torch.zeros_like(scores.diagonal()))


def test_a_loss_that_ignores_the_positives_fails_the_notebook_check(monkeypatch, tmp_path):
    monkeypatch.setattr(vse, "triplet_loss", _loss_ignoring_positives)
    results = train_and_evaluate("baseline", "smoke", name="baseline", data_root=str(tmp_path / "data"),
                                 overrides=[f"output_dir={tmp_path / 'runs'}"], progress=False)
    measured = rsum_by_method({"VSE∞": results})
    expected = expected_from_notebook(BASELINE_NOTEBOOK)
    differences = compare(measured, expected, tolerance=25.0)
    assert [line.split(":")[0] for line in differences] == ["VSE∞ f30k1k", "VSE∞ coco1k"], differences
    assert all(measured[key] < expected[key] for key in expected)


def test_loss_summary_reads_the_last_epoch_of_each_run(tmp_path):
    from itrlib.regression import last_epoch_loss, loss_summary

    lines = [{"event": "step", "epoch": 0, "loss": 9.0}, {"event": "val", "epoch": 0, "rsum": 1.0},
             {"event": "step", "epoch": 1, "loss": -7.0}, {"event": "step", "epoch": 1, "loss": -7.4286}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert last_epoch_loss(tmp_path) == pytest.approx(-7.2143)
    assert loss_summary({"USER (SGE)": {"f30k1k": {"run": str(tmp_path)}}}) == "USER (SGE) last-epoch loss -7.214"
    (tmp_path / "metrics.jsonl").write_text(json.dumps(lines[1]) + "\n")
    with pytest.raises(ItrlibError, match="no training steps"):
        last_epoch_loss(tmp_path)


def test_prepare_injects_the_profile_into_every_notebook_in_run_order(tmp_path):
    from itrlib.notebook_runner import executed_name, project_notebooks
    from itrlib.regression import prepare_notebooks

    written = prepare_notebooks(tmp_path, "smoke")
    assert [p.name for p in written] == [executed_name(nb) for nb in project_notebooks()]
    for path in written:
        injected = [c for c in nbformat.read(path, as_version=4).cells
                    if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1 and 'profile = "smoke"' in injected[0].source, path.name
