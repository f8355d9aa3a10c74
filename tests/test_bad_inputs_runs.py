"""Bad inputs to evaluation, run folders, composites and checkpoints, and writes the system refuses: each is one
line ``error: ...`` naming the file or option, exit code 2, and nothing is created or overwritten."""

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from itrlib.cli import main
from itrlib.config import dump_yaml, load_config
from itrlib.devices import resolve_device
from itrlib.engine.checkpoint import save_checkpoint
from itrlib.errors import ConfigError, DataError, ItrlibError
from itrlib.evaluation.metrics import retrieval_metrics
from itrlib.evaluation.ranking import evaluate_scores
from itrlib.io import WriteError, atomic_write_json, temp_files

GRU = ("text.encoder=bigru", "model.word_dim=16")  # a small model: best.pt of ~200 kB
DEVICE_FORMS = "use auto, cpu, cuda or cuda:N"


@pytest.fixture(scope="module")
def tiny_run(smoke_data, module_dir, fast_config) -> Path:
    """A finished run of one step (BiGRU text encoder): its folder holds config.yaml and best.pt."""
    from itrlib.engine.trainer import Trainer

    config = fast_config(smoke_data, module_dir, "tiny", "train.epochs=1", "train.max_steps_per_epoch=1", *GRU)
    Trainer(config, progress=False).fit()
    return module_dir / "tiny"


def _copy(run: Path, tmp_path: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(run, tmp_path / name))


def _error_line(capsys) -> str:
    """The one line main() printed on stderr (asserted to be the only one, starting with ``error:``)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _eval(run: Path, *extra: str) -> int:
    return main(["eval", "--run", str(run), "--protocol", "f30k1k", "--no-progress", *extra])


class _DiskFull:
    """A binary file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, file, room: int):
        self._file, self._room = file, room

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= size
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)


def _fill_disk_after(monkeypatch, room: int) -> None:
    """Every file opened by the atomic writers fails with ENOSPC once ``room`` bytes were written to it."""
    fdopen = os.fdopen
    monkeypatch.setattr("itrlib.io.os.fdopen", lambda fd, mode: _DiskFull(fdopen(fd, mode), room))


def _refuse(monkeypatch, code: int) -> None:
    """The atomic writers cannot create their temporary file (``code``: an errno)."""
    def mkstemp(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("itrlib.io.tempfile.mkstemp", mkstemp)


# -------------------------------------------------------------------------------------------------- devices
@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:0", "tpu", ""])
def test_unknown_device_is_named_with_the_accepted_forms(tiny_run, device, capsys):
    assert _eval(tiny_run, "--device", device) == 2
    line = _error_line(capsys)
    assert f"--device={device!r} is not a device" in line and DEVICE_FORMS in line
    assert not list(tiny_run.glob("eval-*.json"))


def test_cuda_asked_for_without_cuda(tiny_run, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0"):
        assert _eval(tiny_run, "--device", device) == 2
        assert f"--device={device!r} but CUDA is not available on this machine" in _error_line(capsys)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"train\.device='cuda:3' but this machine has 1 CUDA device\(s\)"):
        resolve_device("cuda:3", "train.device")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert not list(tiny_run.glob("eval-*.json"))


# ------------------------------------------------------------------------------------------------ checkpoints
def _foreign_checkpoints(run: Path) -> dict[str, tuple]:
    """name -> (what to write as best.pt, text the error must hold)."""
    state = torch.load(run / "best.pt", weights_only=False)
    return {
        "bare state dict": (state["model"], "it is a bare state dict"),
        "list": ([1, 2], "it holds a list, not a dict with model, feature_dim, epoch"),
        "official layout": ({"model": [{}, {}], "opt": None, "epoch": 3}, "it has no feature_dim entry"),
        "text feature_dim": ({**state, "feature_dim": "64"}, "its feature_dim entry is '64', not a positive"),
        "json": (b"[1, 2]\n", "could not be read: it is truncated, damaged or not a torch file"),
        "empty": (b"", "could not be read: it is truncated, damaged or not a torch file"),
    }


def test_foreign_or_damaged_checkpoint_is_named(tiny_run, tmp_path, capsys):
    run = _copy(tiny_run, tmp_path)
    best = run / "best.pt"
    original = best.read_bytes()
    cases = _foreign_checkpoints(run)
    cases["truncated"] = (original[: len(original) // 2], "truncated, damaged or not a torch file")
    for name, (content, expected) in cases.items():
        if isinstance(content, bytes):
            best.write_bytes(content)
        else:
            torch.save(content, best)
        assert _eval(run, "--device", "cpu") == 2, name
        line = _error_line(capsys)
        assert f"checkpoint {best} " in line and expected in line, (name, line)
    assert not list(run.glob("eval-*.json"))


def test_a_runs_checkpoint_given_as_official_points_to_eval_run(tiny_run, tmp_path, capsys):
    best = tiny_run / "best.pt"
    argv = ["--arch", "vse", "--data-root", str(tmp_path), "--bert-path", str(tmp_path), "--protocol", "f30k1k"]
    assert main(["eval-official", "--checkpoint", str(best), *argv]) == 2
    line = _error_line(capsys)
    assert f"{best} is a checkpoint of an itrlib run" in line
    assert f"python -m itrlib eval --run {tiny_run} --checkpoint best" in line
    renamed = tmp_path / "model_best.pth"  # outside its run folder: recognised by its content
    shutil.copy(best, renamed)
    assert main(["eval-official", "--checkpoint", str(renamed), *argv]) == 2
    line = _error_line(capsys)
    assert f"{renamed} is a checkpoint of an itrlib run" in line and "eval --run RUN_FOLDER" in line
    torch.save([1, 2], tmp_path / "list.pth")
    assert main(["eval-official", "--checkpoint", str(tmp_path / "list.pth"), *argv]) == 2
    assert f"{tmp_path / 'list.pth'}: not an official checkpoint" in _error_line(capsys)


# ---------------------------------------------------------------------------------------------- score files
@pytest.mark.parametrize("dtype", ["complex64", "bool", "timedelta64[s]", "<U8"])
def test_score_matrix_of_non_real_dtype_is_refused(dtype, tmp_path, capsys):
    path = tmp_path / "scores.npy"
    np.save(path, np.random.default_rng(0).standard_normal((4, 20)).astype(dtype))
    assert main(["eval-scores", str(path), "--protocol", "f30k1k"]) == 2
    line = _error_line(capsys)
    assert f"{path}: scores of dtype {np.dtype(dtype)} cannot be ranked: expected real numbers" in line


def test_integer_scores_are_ranked_and_complex_tensors_refused(tmp_path, capsys):
    path = tmp_path / "scores.npy"
    np.save(path, np.arange(80, dtype=np.int32).reshape(4, 20))
    assert main(["eval-scores", str(path), "--protocol", "f30k1k"]) == 0
    complex_scores = torch.zeros(4, 20, dtype=torch.complex64)
    with pytest.raises(DataError, match="dtype complex64 cannot be ranked"):
        evaluate_scores(complex_scores, "f30k1k")
    with pytest.raises(DataError, match=r"dtype bool cannot be ranked"):
        retrieval_metrics(torch.zeros(4, 20, dtype=torch.bool))


def test_eval_scores_out_must_be_a_writable_file(tmp_path, capsys):
    path = tmp_path / "scores.npy"
    np.save(path, np.random.default_rng(0).standard_normal((4, 20)).astype(np.float32))
    folder = tmp_path / "results"
    folder.mkdir()
    assert main(["eval-scores", str(path), "--protocol", "f30k1k", "--out", str(folder)]) == 2
    assert f"cannot write evaluation results to {folder}: it is a folder; give a file name" in _error_line(capsys)
    blocked = path / "result.json"  # under a file
    assert main(["eval-scores", str(path), "--protocol", "f30k1k", "--out", str(blocked)]) == 2
    assert f"cannot write evaluation results to {blocked}: {path} is a file, not a folder" in _error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "scores.npy"]
    assert not any(folder.iterdir())


# ------------------------------------------------------------------------------------------------ composites
def test_composite_members_are_checked_before_anything_is_written(tiny_run, smoke_data, tmp_path, capsys):
    composite = tmp_path / "ensemble"
    missing = tmp_path / "nowhere"
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "config.yaml").write_text((tiny_run / "config.yaml").read_text())
    moved = _copy(tiny_run, tmp_path, "moved")  # trained on other data
    config = load_config(moved / "config.yaml", [f"data.root={tmp_path}"])
    (moved / "config.yaml").write_text(dump_yaml(config))
    cases = [(missing, f"composite member {missing} does not exist"),
             (smoke_data, f"composite member {smoke_data} is not a run folder (no config.yaml)"),
             (untrained, f"composite member {untrained} has no trained checkpoint {untrained / 'best.pt'}"),
             (moved, "composite members have different data folders (data.root)")]
    for member, expected in cases:
        for protocols in ([], ["--protocol", "f30k1k"]):
            argv = ["composite", "--run", str(composite), "--members", str(tiny_run), str(member), "--alpha", "0.5",
                    "--device", "cpu", "--no-progress", *protocols]
            assert main(argv) == 2
            assert expected in _error_line(capsys)
            assert not composite.exists()
    argv = ["composite", "--run", str(composite), "--members", str(tiny_run), str(moved), "--weights", "1", "nan"]
    assert main(argv) == 2
    assert "weights must be finite numbers" in _error_line(capsys)
    assert not composite.exists() and not list(tiny_run.glob("scores-*"))


def test_composite_whose_member_was_deleted(tiny_run, tmp_path, capsys):
    member = _copy(tiny_run, tmp_path, "member")
    composite = tmp_path / "ensemble"
    assert main(["composite", "--run", str(composite), "--members", str(tiny_run), str(member), "--alpha", "0.5"]) == 0
    shutil.rmtree(member)
    assert _eval(composite, "--device", "cpu") == 2
    assert f"composite member {member} does not exist" in _error_line(capsys)
    assert sorted(p.name for p in composite.iterdir()) == ["composite.json"]


def test_a_composite_has_trained_members_and_takes_no_trained_run_option(tiny_run, tmp_path, capsys):
    member = _copy(tiny_run, tmp_path, "member")
    composite = tmp_path / "ensemble"
    assert main(["composite", "--run", str(composite), "--members", str(tiny_run), str(member), "--alpha", "0.5"]) == 0
    nested = tmp_path / "nested"
    assert main(["composite", "--run", str(nested), "--members", str(composite), str(member), "--alpha", "0.5"]) == 2
    assert f"composite member {composite} is a composite run: members are trained runs" in _error_line(capsys)
    assert not nested.exists()
    assert _eval(composite, "--device", "cpu", "--checkpoint", "last") == 2
    assert f"{composite} is a composite run: checkpoint='last' only apply to trained runs" in _error_line(capsys)
    assert sorted(p.name for p in composite.iterdir()) == ["composite.json"]


# ---------------------------------------------------------------------------------------------------- writes
def test_refused_write_names_the_file_keeps_the_old_one_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    atomic_write_json(target, {"old": 1})
    _refuse(monkeypatch, errno.EACCES)
    with pytest.raises(WriteError, match=rf"cannot write evaluation results to {target}: Permission denied "
                                         r"\(EACCES\); the previous result\.json is unchanged") as caught:
        atomic_write_json(target, {"new": 2}, "evaluation results")
    assert caught.value.errno == errno.EACCES and isinstance(caught.value, OSError)
    monkeypatch.undo()
    _fill_disk_after(monkeypatch, 100)
    with pytest.raises(WriteError, match=rf"cannot write the checkpoint to {tmp_path / 'best.pt'}: "
                                         r"No space left on device \(ENOSPC\)$"):
        save_checkpoint(tmp_path / "best.pt", {"model": {"w": torch.zeros(1000)}, "feature_dim": 4, "epoch": 0})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
    assert target.read_text() == '{\n  "old": 1\n}\n'


def test_unwritable_run_folder_is_found_before_evaluating(tiny_run, tmp_path, monkeypatch, capsys):
    run = _copy(tiny_run, tmp_path)

    def no_evaluation(*args, **kwargs):
        raise AssertionError("the run was evaluated")

    monkeypatch.setattr("itrlib.runs.trained.load_run", no_evaluation)
    monkeypatch.setattr("itrlib.io.os.access", lambda path, mode: False)  # a read-only folder, even for root
    assert _eval(run, "--device", "cpu") == 2
    line = _error_line(capsys)
    assert f"cannot write evaluation results to {run / 'eval-f30k1k.json'}: the folder {run} is not writable" in line


def test_write_failing_after_the_evaluation_names_the_file(tiny_run, tmp_path, monkeypatch, capsys):
    run = _copy(tiny_run, tmp_path)
    before = sorted(p.name for p in run.iterdir())
    _refuse(monkeypatch, errno.EROFS)
    assert _eval(run, "--device", "cpu", "--save-scores", "float32") == 2
    line = _error_line(capsys)
    assert f"cannot write the score matrix to {run / 'scores-test.npy'}: Read-only file system (EROFS)" in line
    monkeypatch.undo()
    _fill_disk_after(monkeypatch, 10)
    assert _eval(run, "--device", "cpu") == 2
    line = _error_line(capsys)
    assert f"cannot write evaluation results to {run / 'eval-f30k1k.json'}: No space left on device" in line
    assert sorted(p.name for p in run.iterdir()) == before


def test_train_into_an_unwritable_output_dir_fails_at_once(smoke_data, tmp_path, capsys):
    blocker = tmp_path / "outputs"
    blocker.write_text("a file where the runs folder should be")
    assert main(["train", "--config", "vse_smoke", f"data.root={smoke_data}", f"output_dir={blocker}"]) == 2
    assert (f"cannot write the run's config to {blocker / 'vse' / 'config.yaml'}: {blocker} is a file, not a "
            "folder") in _error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]


def test_a_run_lock_that_cannot_be_written_names_the_file_and_creates_nothing(tmp_path, monkeypatch):
    from itrlib.engine.run_lock import RunLock

    blocker = tmp_path / "outputs"
    blocker.write_text("a file where the runs folder should be")
    with pytest.raises(WriteError, match=f"cannot write the run's lock file to {blocker / 'run' / 'train.lock'}: "
                                         f"{blocker} is a file, not a folder"):
        RunLock(blocker / "run").acquire()

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", refuse)  # what a read-only mount does even to root
    with pytest.raises(WriteError, match=r"cannot write the run's lock file .*train\.lock: Read-only file system"):
        RunLock(tmp_path / "run").acquire()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]


FILE_SIZE_LIMIT = """\
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails with EFBIG instead of killing
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from itrlib.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_checkpoint_beyond_the_file_size_limit_keeps_the_previous_one(smoke_data, tmp_path):
    """A real refused write: the training process may write files of at most 50 kB, best.pt needs ~200 kB."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"previous")
    argv = ["train", "--config", "vse_smoke", "--no-progress", f"data.root={smoke_data}", f"output_dir={tmp_path}",
            "name=run", "model.embed_size=32", "train.batch_size=16", "train.epochs=1",
            "train.max_steps_per_epoch=1", *GRU]
    done = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, "50000", *argv], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (f"error: cannot write the checkpoint to {run / 'best.pt'}: File "
                                                    "too large (EFBIG); the previous best.pt is unchanged")
    assert (run / "best.pt").read_bytes() == b"previous"
    assert not temp_files(run)


# ------------------------------------------------------------------------------------------------------ main
def test_every_itrlib_error_is_one_line_and_argparse_mistakes_exit_2(monkeypatch, capsys):
    def fail(args):
        raise ItrlibError("first line\n  second line")

    monkeypatch.setattr("itrlib.cli._dispatch", fail)
    assert main(["presets"]) == 2
    assert _error_line(capsys) == "error: first line second line"
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--run", "x", "--protocol", "nope"])
    assert exit_.value.code == 2
