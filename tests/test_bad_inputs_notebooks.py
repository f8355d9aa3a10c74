"""Bad inputs of the notebook harness: a named data folder that does not exist, overrides after --only, and
parameter errors shown as one line (in the notebook, in papermill's report and on the command line)."""

from pathlib import Path

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

import itrlib.data.synth
from itrlib.errors import ConfigError, DataError, ItrlibError
from itrlib.suite.__main__ import _parser, main
from itrlib.suite.notebook import check_parameters
from itrlib.suite.profiles import check_overrides, ensure_data, run_config

PARAMETERS = ["profile", "data_root", "bert_path", "overrides"]


def _notebook(path: Path, source: str) -> None:
    """A two-cell notebook: the parameters cell, then ``source``."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\ndata_root = None\nbert_path = None\noverrides = []')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """A project root (pyproject.toml, itrlib/, two notebooks) as cwd; papermill's executions are recorded, not run."""
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "itrlib").mkdir()
    for name in ("00_first.ipynb", "sub/01_second.ipynb"):
        _notebook(tmp_path / "notebooks" / name, "print('ran')")
    monkeypatch.chdir(tmp_path)
    executed: list[str] = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda source, *args, **kwargs: executed.append(source))
    return executed


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# 1. A data folder the user names is never created nor filled with the synthetic dataset ------------------------
def test_a_named_data_folder_that_does_not_exist_is_an_error_and_is_never_created(tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(DataError, match=rf"data folder {missing} does not exist.*data synth --out {missing} "
                                        r"--size smoke"):
        ensure_data(run_config("vse", "smoke", data_root=str(missing)), "smoke", progress=False)
    assert not (tmp_path / "no").exists()


def test_an_existing_named_folder_without_a_dataset_card_is_never_filled(tmp_path):
    ensure_data(run_config("vse", "embedded", data_root=str(tmp_path)), "embedded", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_only_the_profiles_own_default_folder_is_built_when_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    built = []
    monkeypatch.setattr(itrlib.data.synth, "write_synthetic", lambda root, size, progress: built.append((root, size)))
    ensure_data(run_config("vse", "smoke"), "smoke", progress=False)
    assert built == [(Path("data/synthetic-smoke"), "smoke")]


def test_notebooks_with_a_missing_data_folder_fail_in_one_line_before_any_kernel(tiny_project, tmp_path, capsys):
    missing = tmp_path / "no_such_data"
    assert main(["notebooks", "--profile", "smoke", "--data-root", str(missing)]) == 2
    assert f"data folder {missing} does not exist" in _one_error_line(capsys)
    assert tiny_project == [] and not missing.exists() and not (tmp_path / "outputs").exists()


def test_the_notebook_parameter_check_refuses_a_missing_data_root(tmp_path):
    namespace = {"profile": "smoke", "data_root": str(tmp_path / "absent"), "bert_path": None, "overrides": []}
    with pytest.raises(DataError, match=r"data folder .*absent does not exist"):
        check_parameters(namespace, PARAMETERS)


def test_text_encoder_weights_that_are_not_here_fail_before_any_kernel(tiny_project, tmp_path, capsys):
    missing = tmp_path / "no_such_bert"
    assert main(["notebooks", "--profile", "smoke", "--bert-path", str(missing)]) == 2
    assert f"text.bert_path={str(missing)!r} is neither an existing folder" in _one_error_line(capsys)
    assert tiny_project == []
    namespace = {"profile": "smoke", "data_root": None, "bert_path": str(missing), "overrides": []}
    with pytest.raises(ItrlibError, match="is neither an existing folder"):
        check_parameters(namespace, PARAMETERS)


# 2. --only never swallows the overrides; every override is checked before any notebook runs ---------------------
def test_overrides_after_only_are_overrides_and_are_checked_before_any_notebook(tiny_project, capsys):
    assert main(["notebooks", "--profile", "smoke", "--only", "00_first", "train.epoch=1"]) == 2
    assert "unknown config key 'epoch' in train; did you mean epochs?" in _one_error_line(capsys)
    assert tiny_project == []


def test_only_takes_one_value_per_option_or_comma_separated_values():
    args = _parser().parse_args(["notebooks", "--only", "afa/02,user/03", "--only", "00_base", "train.epochs=1"])
    assert args.only == ["afa/02", "user/03", "00_base"] and args.overrides == ["train.epochs=1"]


def test_an_only_value_that_matches_no_notebook_is_an_error_naming_it(tiny_project, capsys):
    assert main(["notebooks", "--profile", "smoke", "--only", "00_first,nothing"]) == 2
    assert "--only 'nothing': no notebook path contains it" in _one_error_line(capsys)
    assert main(["notebooks", "--profile", "smoke", "--only", "00_first", "sub/01"]) == 2  # sub/01: an override
    assert "'sub/01' is not of the form section.key=value (several notebooks: repeat --only" in _one_error_line(capsys)
    assert tiny_project == []


def test_an_override_is_checked_against_every_method_of_the_profile():
    check_overrides("smoke", ["model.merge_ratio=0.5", "train.epochs=1"])  # merge_ratio: AFA's only
    with pytest.raises(ConfigError, match="unknown config key 'merge_ratoi' in model"):
        check_overrides("smoke", ["model.merge_ratoi=0.5"])
    with pytest.raises(ConfigError, match=r"parameter overrides must be a list of strings"):
        check_parameters({"profile": "smoke", "data_root": None, "bert_path": None, "overrides": "train.epochs=1"},
                         PARAMETERS)


# 4. A parameter error is one line: in the executed notebook, in papermill's report, on the command line ---------
def test_an_itrlib_error_in_a_papermill_cell_shows_one_line_without_traceback(tmp_path):
    _notebook(tmp_path / "tiny.ipynb", "from itrlib.suite.notebook import check_parameters\n"
                                       f"params = check_parameters(globals(), {PARAMETERS})")
    with pytest.raises(PapermillExecutionError) as caught:
        papermill.execute_notebook(str(tmp_path / "tiny.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"profile": "smoke", "profle": "smoke"}, cwd=str(tmp_path),
                                   progress_bar=False, kernel_name="python3")
    line = "ConfigError: unknown notebook parameter(s) ['profle']; this notebook takes " + str(sorted(PARAMETERS))
    assert caught.value.traceback == [line]
    assert str(caught.value).strip().splitlines()[-1] == line and "Traceback" not in str(caught.value)
    errors = [out for cell in nbformat.read(tmp_path / "out.ipynb", 4).cells for out in cell.get("outputs", [])
              if out.output_type == "error"]
    assert [error.traceback for error in errors] == [[line]]


@pytest.mark.parametrize(("ename", "code"), [("DataError", 2), ("RuntimeError", 1)])
def test_a_notebook_failing_on_an_itrlib_error_exits_2_with_one_line(tiny_project, monkeypatch, capsys, ename, code):
    def fail(*args, **kwargs):
        raise PapermillExecutionError(1, 2, "run()", ename, "the cause", [f"{ename}: the cause"])

    monkeypatch.setattr(papermill, "execute_notebook", fail)
    assert main(["notebooks", "--profile", "smoke", "--only", "00_first"]) == code
    assert _one_error_line(capsys) == f"error: a notebook failed: {ename}: the cause"

