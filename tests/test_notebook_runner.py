"""The headless notebook runner: parameters, one output folder per profile, timings, a quiet log."""

import json
from pathlib import Path

import nbformat
import pytest

from itrlib.errors import ConfigError, ItrlibError
from itrlib.suite.notebook_runner import executed_name, notebook_parameters, project_notebooks, run_notebooks

ROOT = Path(__file__).resolve().parents[1]


def test_the_project_notebooks_run_vse_first_then_afa_user_mvsen_leaderboard():
    notebooks = project_notebooks(ROOT)
    assert str(notebooks[0]) == "notebooks/00_vse.ipynb"
    folders = [nb.parent.name for nb in notebooks[1:]]
    # MVSEN reuses the others' runs; the leaderboard all of theirs
    assert folders == sorted(folders, key=["afa", "user", "mvsen", "leaderboard"].index)
    for folder in set(folders):
        inside = [nb.name for nb in notebooks if nb.parent.name == folder]
        assert inside == sorted(inside) and len(inside) >= (1 if folder == "leaderboard" else 3)


def test_executed_names_are_flat_and_distinct():
    assert executed_name("notebooks/afa/01_train_eval.ipynb") == "afa__01_train_eval.ipynb"
    assert executed_name("notebooks/00_vse.ipynb") == "00_vse.ipynb"
    names = [executed_name(p) for p in project_notebooks(ROOT)]
    assert len(set(names)) == len(names)


def test_parameters_pass_only_what_is_given_and_check_the_profile(tmp_path):
    assert notebook_parameters("embedded") == {"profile": "embedded"}
    data = str(tmp_path)
    assert notebook_parameters("f30k", data_root=data, bert_path="minilm", overrides=["train.epochs=2"]) == {
        "profile": "f30k", "data_root": data, "bert_path": "minilm", "overrides": ["train.epochs=2"]}
    with pytest.raises(ItrlibError, match=r"text\.bert_path='/no/bert' is neither an existing folder"):
        notebook_parameters("f30k", data_root=data, bert_path="/no/bert")
    with pytest.raises(ConfigError, match="unknown profile 'f30"):
        notebook_parameters("f30")


def _tiny_project(root: Path, body: str) -> None:
    (root / "notebooks" / "sub").mkdir(parents=True)
    for name, source in (("00_first.ipynb", body), ("sub/01_second.ipynb", "print('second ran')")):
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell('profile = "embedded"\ndata_root = None')
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(source)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / "notebooks" / name)


def test_runner_executes_times_and_keeps_the_log_readable(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("ITRLIB_PROGRESS", raising=False)
    _tiny_project(tmp_path, "import os\nfrom itrlib.progress import progress_mode\n"
                            "print('mode', progress_mode(), 'profile', profile, 'data', data_root)")
    (tmp_path / "real/f30k").mkdir(parents=True)
    timings = run_notebooks("f30k", data_root="real/f30k", root=tmp_path)  # relative: to the project root
    out, err = capfd.readouterr()
    assert "mode lines profile f30k data real/f30k" in out and "second ran" in out
    assert "[1/2] notebooks/00_first.ipynb (profile=f30k, data_root=real/f30k) started" in out
    assert "[2/2] notebooks/sub/01_second.ipynb done in" in out and "| total |" in out
    assert "without encryption" not in out + err  # the kernel's start-up warning is not in the log
    executed = tmp_path / "outputs/f30k/notebooks"
    assert sorted(p.name for p in executed.iterdir()) == ["00_first.ipynb", "sub__01_second.ipynb",
                                                          "timings.json"]
    saved = json.loads((executed / "timings.json").read_text())
    assert saved["profile"] == "f30k" and [t["ok"] for t in saved["notebooks"]] == [True, True]
    assert saved["total_seconds"] == pytest.approx(sum(t.seconds for t in timings))
    assert not (tmp_path / "outputs/embedded").exists()  # another profile's folder is never touched


def test_a_failing_notebook_stops_the_run_and_is_recorded(tmp_path, capfd):
    _tiny_project(tmp_path, "raise RuntimeError('broken cell')")
    with pytest.raises(Exception, match="broken cell"):
        run_notebooks("smoke", root=tmp_path)
    out, _ = capfd.readouterr()
    assert "00_first.ipynb FAILED (partly executed copy kept)" in out and "second ran" not in out
    saved = json.loads((tmp_path / "outputs/smoke/notebooks/timings.json").read_text())
    assert [t["ok"] for t in saved["notebooks"]] == [False]
    with pytest.raises(ItrlibError, match="no notebook path contains"):
        run_notebooks("smoke", only=["nothing"], root=tmp_path)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_real_data_profile_never_touches_the_embedded_results(tmp_path, monkeypatch, smoke_data):
    """The embedded-profile stand-in (smoke) and f30k on a synthetic folder passed as real data, same run name."""
    from itrlib.suite.experiments import train_and_evaluate

    monkeypatch.chdir(tmp_path)
    fast = ["model.embed_size=32", "train.batch_size=16", "train.epochs=1", "train.max_steps_per_epoch=2"]
    embedded = train_and_evaluate("vse", "smoke", name="vse", data_root=str(smoke_data), overrides=fast,
                                  progress=False)
    before = _tree(tmp_path / "outputs/smoke")
    real = train_and_evaluate("vse", "f30k", name="vse", data_root=str(smoke_data), bert_path="minilm",
                              overrides=fast, progress=False)
    assert _tree(tmp_path / "outputs/smoke") == before
    assert real["f30k1k"]["run"] == "outputs/f30k/runs/vse" != embedded["f30k1k"]["run"]
    config = (tmp_path / "outputs/f30k/runs/vse/config.yaml").read_text()
    assert f"root: {smoke_data}" in config and "bert_path: minilm" in config
