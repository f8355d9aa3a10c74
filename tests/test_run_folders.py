"""Run folders hold one run: a lock per folder, checkpoints checked against the config, no leftover temps."""

import os
import shutil
import subprocess
import sys
import time
import warnings

import pytest
import torch

from itrlib.config import dump_yaml, load_config, to_dict
from itrlib.engine.components import load_run
from itrlib.engine.run_folder import load_model_state
from itrlib.engine.run_lock import LOCK_FILE, RunLock
from itrlib.engine.trainer import Trainer
from itrlib.errors import DataError, ItrlibError

HOLD_LOCK = ("import sys, time; from itrlib.engine.run_lock import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
             "print('locked', flush=True); time.sleep(120)")


def _config(fast_config, data, out, name, *extra):
    """One epoch of one step (embed size 32), keeping ``last.pt``: the run of ``finished_run``, changed by
    ``extra``."""
    return fast_config(data, out, name, "train.epochs=1", "train.max_steps_per_epoch=1", "train.keep_last=true",
                       *extra)


@pytest.fixture(scope="module")
def finished_run(smoke_data, module_dir, fast_config):
    """A finished run of ``_config``: its folder holds config.yaml, last.pt and best.pt."""
    out = module_dir
    Trainer(_config(fast_config, smoke_data, out, "src"), progress=False).fit()
    return out / "src"


def _copy_run(finished_run, tmp_path, name="run"):
    return shutil.copytree(finished_run, tmp_path / name)


@pytest.fixture
def holder(tmp_path):
    """A second process holding the lock of ``tmp_path/run``; killed (SIGKILL) at teardown if still alive."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "run")], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "locked"
    yield process
    process.kill()
    process.wait()
    process.stdout.close()


def test_second_process_is_refused_at_once(smoke_data, tmp_path, fast_config, holder, capsys):
    config = fast_config(smoke_data, tmp_path, "run")
    lock_file = tmp_path / "run" / LOCK_FILE
    with pytest.raises(ItrlibError, match=rf"in use by another training \(PID {holder.pid} .*{LOCK_FILE}"):
        Trainer(config, progress=False)
    from itrlib.cli import main

    assert main(["train", "--config", "vse_smoke", "--no-progress", f"data.root={smoke_data}",
                 f"output_dir={tmp_path}", "name=run"]) == 2
    assert f"PID {holder.pid}" in capsys.readouterr().err
    assert sorted(p.name for p in lock_file.parent.iterdir()) == [LOCK_FILE]  # the holder's lock is intact
    assert f'"pid": {holder.pid}' in lock_file.read_text()


def test_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path, holder):
    holder.kill()
    holder.wait()
    with pytest.warns(RuntimeWarning, match=rf"took over the stale lock .*PID {holder.pid}"), \
            RunLock(tmp_path / "run") as lock:
        assert f'"pid": {os.getpid()}' in lock.path.read_text()
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_lock_in_one_process(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    with RunLock(folder) as lock:
        with pytest.raises(ItrlibError, match=rf"PID {os.getpid()} \(this process\)"):
            RunLock(folder).acquire()
        assert lock.held
    assert not lock.held and not (folder / LOCK_FILE).exists() and folder.is_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a cleanly released lock is not stale
        RunLock(folder).acquire().release()


def test_trainer_releases_the_folder_when_it_fails(smoke_data, tmp_path, fast_config, finished_run):
    with pytest.raises(DataError):  # fails before anything is written: the folder the lock created goes away
        Trainer(fast_config(tmp_path / "nowhere", tmp_path, "missing"), progress=False)
    assert not (tmp_path / "missing").exists()
    run = _copy_run(finished_run, tmp_path)
    with pytest.raises(ItrlibError, match=r"different config \(train\.lr: 0\.002 -> 0\.001\)"):
        Trainer(_config(fast_config, smoke_data, tmp_path, "run", "train.lr=1e-3"), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the refused Trainer released the lock cleanly
        with Trainer(_config(fast_config, smoke_data, tmp_path, "run"), progress=False) as trainer:
            assert (run / LOCK_FILE).is_file()
    assert not (run / LOCK_FILE).exists()
    with pytest.raises(ItrlibError, match="closed"):
        trainer.fit()


def test_checkpoint_of_another_run_is_not_resumed(smoke_data, tmp_path, fast_config, finished_run):
    run = tmp_path / "copied"
    run.mkdir()
    shutil.copy(finished_run / "last.pt", run / "last.pt")  # no config.yaml beside it
    with pytest.raises(ItrlibError, match=r"last\.pt was written by a different config \(model\.embed_size: 32 -> "
                                          r"16, train\.lr_decay_epochs: \[1\] -> \[5\]\)"):
        Trainer(_config(fast_config, smoke_data, tmp_path, "copied", "model.embed_size=16",
                        "train.lr_decay_epochs=[5]"), progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["last.pt"]  # refused before anything was written


def test_raising_epochs_continues_a_finished_run(smoke_data, tmp_path, fast_config, finished_run):
    run = _copy_run(finished_run, tmp_path)
    summary = Trainer(_config(fast_config, smoke_data, tmp_path, "run", "train.epochs=2", "train.log_every=5",
                              "train.checkpoint_every=0"), progress=False).fit()
    assert summary["epochs"] == 2 and load_config(run / "config.yaml").train.epochs == 2
    with pytest.raises(ItrlibError, match=r"already trained 2 epochs, more than train\.epochs=1"):
        Trainer(_config(fast_config, smoke_data, tmp_path, "run"), progress=False)


def test_a_run_finished_without_last_pt_is_reused_not_retrained(smoke_data, tmp_path, fast_config):
    config = _config(fast_config, smoke_data, tmp_path, "run", "train.keep_last=false")
    summary = Trainer(config, progress=False).fit()
    run = tmp_path / "run"
    assert not (run / "last.pt").exists() and (run / "best.pt").is_file()
    kept = {name: (run / name).read_bytes() for name in ("best.pt", "metrics.jsonl", "train_summary.json")}
    assert Trainer(config, progress=False).fit() == summary
    assert kept == {name: (run / name).read_bytes() for name in kept}  # nothing trained, nothing rewritten
    with pytest.raises(ItrlibError, match=r"finished after 1 epochs without keeping last\.pt "
                                          r"\(train\.keep_last=false\), so it is not a run of train\.epochs=2"):
        Trainer(_config(fast_config, smoke_data, tmp_path, "run", "train.epochs=2"), progress=False)


def test_evaluation_checks_the_checkpoint_against_config_yaml(tmp_path, finished_run):
    run = _copy_run(finished_run, tmp_path)
    config = load_config(run / "config.yaml")
    moved = load_config(run / "config.yaml", ["data.root=/elsewhere", "train.epochs=7", "train.device=cpu"])
    (run / "config.yaml").write_text(dump_yaml(moved))
    assert load_run(run, device="cpu").config.data.root == "/elsewhere"  # allowed differences
    (run / "config.yaml").write_text(dump_yaml(load_config(run / "config.yaml", ["model.margin=0.5"])))
    with pytest.raises(ItrlibError, match=r"best\.pt was written by a different config \(model\.margin: 0\.2 -> "
                                          r"0\.5\); it does not belong with .*config\.yaml"):
        load_run(run, device="cpu")
    assert config.model.margin == 0.2


def test_checkpoint_of_another_architecture_names_the_file_and_parameter(smoke_data, tmp_path, fast_config,
                                                                         finished_run):
    run = _copy_run(finished_run, tmp_path)
    for name in ("last.pt", "best.pt"):  # checkpoints that do not carry their config
        state = torch.load(run / name, weights_only=False)
        del state["config"]
        torch.save(state, run / name)
    (run / "config.yaml").unlink()
    trainer = Trainer(_config(fast_config, smoke_data, tmp_path, "run", "model.embed_size=16"),
                      progress=False)
    with pytest.raises(ItrlibError, match=r"last\.pt was written by a different model/config and does not fit "
                                          r"this one \(its config is not stored.*\); first mismatching parameter: "
                                          r"\S+: \(32, 64\) in the checkpoint, \(16, 64\) in the model"):
        trainer.fit()
    with pytest.raises(ItrlibError, match=r"best\.pt was written by a different model/config"):
        load_run(run, device="cpu")


def test_model_state_mismatch_lists_the_known_causes(tmp_path):
    config = load_config("vse_smoke")
    state = {"model": torch.nn.Linear(64, 8).state_dict(), "feature_dim": 64,
             "config": to_dict(load_config("vse_smoke", ["data.root=/a"]))}
    with pytest.raises(ItrlibError, match=r"x\.pt was written by a different model/config and does not fit this "
                                          r"one \(config differences: data\.root: '/a' -> 'data/synthetic-smoke'; "
                                          r"features of size 64 in the checkpoint, 32 in the data\); first "
                                          r"mismatching parameter: weight: \(8, 64\) in the checkpoint, \(8, 32\)"):
        load_model_state(torch.nn.Linear(32, 8), state, tmp_path / "x.pt", config, 32)


def test_leftover_temp_files_are_removed_when_a_trainer_starts(smoke_data, tmp_path, fast_config, finished_run):
    run = _copy_run(finished_run, tmp_path)
    interrupted = {".last.pt.a1b2c3d4.tmp": 1000, ".best.pt.x_y_z_12.tmp": 24, ".eval-old.json.k9k9k9k9.tmp": 10}
    for name, size in interrupted.items():
        (run / name).write_bytes(b"\0" * size)
    old = time.time() - 3600
    os.utime(run / ".eval-old.json.k9k9k9k9.tmp", (old, old))
    (run / ".eval-f30k1k.json.live1234.tmp").write_bytes(b"{")  # an evaluation writing now: kept
    with pytest.warns(RuntimeWarning, match=r"removed 3 temporary file\(s\) .*\(1034 bytes freed\)"):
        Trainer(_config(fast_config, smoke_data, tmp_path, "run"), progress=False).close()
    assert sorted(p.name for p in run.glob(".*.tmp")) == [".eval-f30k1k.json.live1234.tmp"]
