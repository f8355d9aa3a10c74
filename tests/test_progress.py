"""Progress as plain lines in logs and headless notebooks, live bars where a person watches."""

import sys

import pytest
from tqdm.auto import tqdm

from itrlib import progress
from itrlib.progress import LineProgress, format_seconds, progress_bar, progress_mode

BIGRU = "text.encoder=bigru"
"""The training-progress tests need any text encoder: the BiGRU's runs take a second, MiniLM's ten."""


@pytest.mark.parametrize(("env", "session", "tty", "expected"), [
    ("bars", None, False, "bars"), ("lines", "x.ipynb", True, "lines"), ("OFF", None, True, "off"),
    (None, None, True, "bars"), (None, None, False, "lines"),
])
def test_mode_outside_a_kernel(monkeypatch, env, session, tty, expected):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
    for name, value in (("ITRLIB_PROGRESS", env), ("JPY_SESSION_NAME", session)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert progress_mode() == expected


def test_a_kernel_of_jupyterlab_gets_bars_a_headless_kernel_lines(monkeypatch):
    monkeypatch.delenv("ITRLIB_PROGRESS", raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/00_vse.ipynb")
    assert progress_mode() == "bars"
    monkeypatch.delenv("JPY_SESSION_NAME")  # papermill and nbval start kernels without a session
    assert progress_mode() == "lines"


def test_unknown_mode_is_an_error(monkeypatch):
    monkeypatch.setenv("ITRLIB_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="ITRLIB_PROGRESS='fancy'"):
        progress_mode()


def test_lines_mode_prints_occasional_lines_and_a_final_one(monkeypatch, capsys):
    monkeypatch.setenv("ITRLIB_PROGRESS", "lines")
    clock = iter([0.0, 10.0, 70.0, 80.0, 200.0, 250.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = progress_bar(range(4), desc="encode test images", unit="batches")
    assert isinstance(bar, LineProgress)
    assert list(bar) == [0, 1, 2, 3]
    lines = capsys.readouterr().out.splitlines()
    # updates at t=10 (quiet), 70 (a line), 80 (quiet: < 60 s since), 200 (a line); closed at 250
    assert lines == ["encode test images: 2/4 batches (50%) after 1 min 10 s",
                     "encode test images: 4/4 batches (100%) after 3 min 20 s",
                     "encode test images: 4/4 batches (100%) in 4 min 10 s"]
    assert "\r" not in capsys.readouterr().out


def test_short_steps_print_nothing_and_off_silences_everything(monkeypatch, capsys):
    monkeypatch.setenv("ITRLIB_PROGRESS", "lines")
    with progress_bar(total=10, desc="scoring", unit="pairs", unit_scale=True) as bar:
        bar.update(10)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("ITRLIB_PROGRESS", "off")
    assert isinstance(progress_bar(range(2)), tqdm) and progress_bar(range(2)).disable
    progress.say("hello")
    assert capsys.readouterr().out == ""


def test_disabled_progress_wins_over_the_mode(monkeypatch):
    monkeypatch.setenv("ITRLIB_PROGRESS", "lines")
    assert progress_bar(range(2), enabled=False).disable


@pytest.mark.parametrize(("seconds", "text"), [(4.25, "4.2 s"), (65, "1 min 05 s"), (3725, "1 h 02 min")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_training_and_evaluation_report_readable_lines(monkeypatch, capsys, smoke_data, tmp_path, fast_config):
    from itrlib.engine.trainer import train
    from itrlib.runs.any_run import evaluate_run

    monkeypatch.setenv("ITRLIB_PROGRESS", "lines")
    config = fast_config(smoke_data, tmp_path, "lines", BIGRU)
    summary = train(config)
    result = evaluate_run(config.run_dir, "f30k1k")
    out = capsys.readouterr().out
    assert "\r" not in out and "%|" not in out  # no bar drawn
    lines = out.splitlines()
    assert lines[0].startswith("lines: vse, epochs 0-1, batch 16, ") and "(from scratch)" in lines[0]
    epochs = [line for line in lines if " done in " in line]
    assert [line.split(" done in ")[0] for line in epochs] == ["lines: epoch 0 of 0-1", "lines: epoch 1 of 0-1"]
    assert all("over 3 steps, dev rSum" in line for line in epochs)
    assert f"best dev rSum {summary['best_val']['rsum']:.1f} at epoch {summary['best_epoch']}" in out
    assert f"lines: f30k1k on test ({result['n_images']} images): rSum {result['metrics']['rsum']:.1f}" in out
    folds = evaluate_run(config.run_dir, "coco1k")
    assert f"lines: coco1k on testall (50 images, 5 folds of 10): rSum {folds['metrics']['rsum']:.1f}" in \
        capsys.readouterr().out
    train(config)  # a finished run is reused, and says so
    assert "(finished run reused)" in capsys.readouterr().out


def test_the_progress_display_never_changes_training(monkeypatch, smoke_data, tmp_path, fast_config):
    """Validation between epochs must not draw from the global torch RNG (tqdm.auto starts a DataLoader
    twice, a plain loop once): the losses after the first validation are the same in every mode."""
    from itrlib.engine.trainer import train
    from itrlib.io import read_jsonl

    losses = {}
    for mode in ("bars", "lines"):
        monkeypatch.setenv("ITRLIB_PROGRESS", mode)
        config = fast_config(smoke_data, tmp_path / mode, "run", "train.log_every=1", BIGRU)
        train(config)
        losses[mode] = [r["loss"] for r in read_jsonl(config.run_dir / "metrics.jsonl") if r["event"] == "step"]
    assert len(losses["bars"]) == 6 and losses["bars"] == losses["lines"]
