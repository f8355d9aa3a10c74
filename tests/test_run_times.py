"""Time per run: read from each run folder's training log and evaluation files."""

import json
import math

import pytest

from itrlib.suite.report.run_times import run_time_frame, run_time_table


def _log(run_dir, records):
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "config.yaml").write_text("name: x\nmodel:\n  name: user\n")


def _evaluation(run_dir, protocol, split, encode, score, rank):
    result = {"protocol": protocol, "split": split, "metrics": {"rsum": 1.0},
              "timing": {"encode_s": encode, "score_s": score, "rank_s": rank, "pairs_scored": 10, "device": "cpu"}}
    (run_dir / f"eval-{protocol}.json").write_text(json.dumps(result))


def test_training_adds_every_epoch_of_a_resumed_run_and_a_split_is_encoded_and_scored_once(tmp_path):
    resumed = tmp_path / "user"
    _log(resumed, [{"event": "step", "epoch": 0, "step": 10, "loss": 1.0, "time": 1.0},
                   {"event": "val", "epoch": 0, "step": 39, "epoch_seconds": 100.0, "rsum": 50.0, "time": 2.0},
                   {"event": "resume", "epoch": 1, "step": 39, "time": 3.0},
                   {"event": "val", "epoch": 1, "step": 78, "epoch_seconds": 20.5, "rsum": 60.0, "time": 86400.0}])
    _evaluation(resumed, "coco1k", "testall", encode=6.0, score=1.0, rank=0.25)
    _evaluation(resumed, "coco5k", "testall", encode=6.0, score=1.0, rank=0.5)
    _evaluation(resumed, "f30k1k", "test", encode=2.0, score=0.5, rank=0.25)
    composite = tmp_path / "mvsen_ensemble"  # combines its members' saved scores: no training, no timing
    composite.mkdir()
    (composite / "eval-f30k1k.json").write_text(json.dumps({"protocol": "f30k1k", "split": "test",
                                                            "model": "composite", "metrics": {"rsum": 1.0}}))
    (tmp_path / "empty").mkdir()

    frame = run_time_frame(tmp_path)
    assert list(frame["run"]) == ["mvsen_ensemble", "user"]
    user = frame.set_index("run").loc["user"]
    assert user["model"] == "user" and user["steps"] == 78 and user["trained"] == "1970-01-02 00:00"
    assert user["training s"] == pytest.approx(120.5)
    assert user["evaluation s"] == pytest.approx(7.0 + 2.5 + 0.25 + 0.5 + 0.25)
    ensemble = frame.set_index("run").loc["mvsen_ensemble"]
    assert ensemble["model"] == "composite" and ensemble["trained"] == ""
    assert math.isnan(ensemble["training s"]) and math.isnan(ensemble["evaluation s"])

    shown = run_time_table(frame)
    total = shown.iloc[-1]
    assert total["run"] == "total" and total["steps"] == 78 and total["training"] == "2 min 00 s"
    assert shown.iloc[1]["training"] == "2 min 00 s" and total["evaluation"] == "10.5 s"
    assert shown.iloc[0]["training"] == shown.iloc[0]["evaluation"] == "–"


def test_no_runs_folder_gives_an_empty_table(tmp_path):
    assert run_time_frame(tmp_path / "missing").empty and run_time_table(run_time_frame(tmp_path)).empty
