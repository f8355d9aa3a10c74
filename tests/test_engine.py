"""Training engine: determinism, resume equivalence, atomic artefacts, bad-input errors."""

import shutil

import pytest
import torch

from itrlib.engine.trainer import TIMING_KEYS, Trainer
from itrlib.errors import ItrlibError
from itrlib.io import read_jsonl


def _records(run_dir):
    """metrics.jsonl without wall-clock times and resume markers."""
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_jsonl(run_dir / "metrics.jsonl")
            if r["event"] != "resume"]


def _weights(path):
    return torch.load(path, weights_only=False)["model"]

KEEP_LAST = "train.keep_last=true"
"""The resume tests compare and reuse ``last.pt`` of finished runs (smoke presets delete it)."""


@pytest.fixture(scope="module")
def reference_run(smoke_data, module_dir, fast_config):
    """One uninterrupted run that the determinism and resume tests compare against."""
    out = module_dir
    summary = Trainer(fast_config(smoke_data, out, "ref", KEEP_LAST), progress=False).fit()
    return out / "ref", summary


def test_same_seed_gives_identical_metrics(smoke_data, tmp_path, fast_config, reference_run):
    ref_dir, ref_summary = reference_run
    again = Trainer(fast_config(smoke_data, tmp_path, "ref", KEEP_LAST), progress=False).fit()
    assert again["best_val"] == ref_summary["best_val"]
    assert _records(tmp_path / "ref") == _records(ref_dir)


def test_killed_run_resumes_to_the_same_result(smoke_data, tmp_path, fast_config, reference_run):
    ref_dir, ref_summary = reference_run
    crashing = Trainer(fast_config(smoke_data, tmp_path, "ref", KEEP_LAST), progress=False)

    def crash(step):
        if step == 5:  # mid second epoch, one step after the step-4 checkpoint
            raise KeyboardInterrupt("simulated kill")

    crashing.model.after_optimizer_step = crash
    with pytest.raises(KeyboardInterrupt):
        crashing.fit()
    assert not (tmp_path / "ref" / "train_summary.json").exists()

    resumed = Trainer(fast_config(smoke_data, tmp_path, "ref", KEEP_LAST), progress=False).fit()
    assert resumed["best_val"] == ref_summary["best_val"]
    assert _records(tmp_path / "ref") == _records(ref_dir)
    resumed_weights = _weights(tmp_path / "ref" / "last.pt")
    for key, value in _weights(ref_dir / "last.pt").items():
        assert torch.equal(value, resumed_weights[key]), key


def test_a_run_keeping_no_last_pt_writes_none_after_its_last_epoch_and_resumes_a_kill_there(
        smoke_data, tmp_path, fast_config, reference_run):
    ref_dir, ref_summary = reference_run
    config = fast_config(smoke_data, tmp_path, "ref", "train.keep_last=false")
    crashing = Trainer(config, progress=False)
    saved, save_last = [], crashing._save_last

    def recorded_save():
        saved.append(crashing.epoch)
        save_last()

    def killed_before_the_summary():
        raise KeyboardInterrupt("simulated kill")

    crashing._save_last, crashing._write_summary = recorded_save, killed_before_the_summary
    with pytest.raises(KeyboardInterrupt):
        crashing.fit()
    assert saved and max(saved) == 1  # an end-of-run save would record epoch 2
    resumed = Trainer(config, progress=False).fit()
    assert resumed["best_val"] == ref_summary["best_val"]
    assert _records(tmp_path / "ref") == _records(ref_dir)
    assert not (tmp_path / "ref" / "last.pt").exists()


def test_finished_run_is_not_retrained_and_other_config_is_refused(smoke_data, fast_config, reference_run):
    ref_dir, ref_summary = reference_run
    out = ref_dir.parent
    lines = len(read_jsonl(ref_dir / "metrics.jsonl"))
    again = Trainer(fast_config(smoke_data, out, "ref", KEEP_LAST), progress=False).fit()
    assert again["best_val"] == ref_summary["best_val"]
    assert len(read_jsonl(ref_dir / "metrics.jsonl")) == lines + 1  # only a resume marker
    with pytest.raises(ItrlibError, match="different config"):
        Trainer(fast_config(smoke_data, out, "ref", KEEP_LAST, "train.lr=1e-3"), progress=False)


def test_a_last_pt_that_cannot_resume_is_named_and_left_alone(smoke_data, tmp_path, fast_config, reference_run):
    ref_dir, _ = reference_run
    run = tmp_path / "ref"
    run.mkdir()
    shutil.copy(ref_dir / "best.pt", run / "last.pt")  # best.pt holds the model, not the optimiser or RNG
    before = (run / "last.pt").read_bytes()
    with pytest.raises(ItrlibError, match=r"last\.pt cannot resume this run: it lacks optimizer, batch_in_epoch"):
        Trainer(fast_config(smoke_data, tmp_path, "ref", KEEP_LAST), progress=False)
    assert (run / "last.pt").read_bytes() == before and sorted(p.name for p in run.iterdir()) == ["last.pt"]


def test_unknown_loss_weight_is_an_error(smoke_data, tmp_path, fast_config):
    trainer = Trainer(fast_config(smoke_data, tmp_path, "w", "train.loss_weights={tripplet: 1}"), progress=False)
    with pytest.raises(ItrlibError, match="tripplet"):
        trainer.fit()


def test_nan_loss_stops_with_a_clear_error(smoke_data, tmp_path, fast_config):
    trainer = Trainer(fast_config(smoke_data, tmp_path, "nan"), progress=False)
    original = trainer.model.losses
    trainer.model.losses = lambda batch: {k: v * float("nan") for k, v in original(batch).items()}
    with pytest.raises(ItrlibError, match="non-finite loss"):
        trainer.fit()


def test_bigru_text_encoder_trains_and_saves_vocabulary(smoke_data, tmp_path, fast_config):
    summary = Trainer(fast_config(smoke_data, tmp_path, "gru", "text.encoder=bigru", "model.word_dim=16",
                                  "train.epochs=1"), progress=False).fit()
    assert summary["best_epoch"] == 0
    assert (tmp_path / "gru" / "vocab.json").is_file()


def test_the_last_step_of_every_epoch_is_logged_even_between_log_every_steps(smoke_data, tmp_path, fast_config):
    from itrlib.suite.regression import last_epoch_loss

    config = fast_config(smoke_data, tmp_path, "run", "train.log_every=100", "text.encoder=bigru")
    Trainer(config, progress=False).fit()
    steps = [(r["epoch"], r["step"]) for r in read_jsonl(tmp_path / "run/metrics.jsonl") if r["event"] == "step"]
    assert steps == [(0, 3), (1, 6)]  # 2 epochs of 3 steps, log_every 100
    assert last_epoch_loss(tmp_path / "run") > 0
