"""End-to-end: the CLI trains, evaluates under each protocol, and reports errors cleanly."""

import json
import subprocess
import sys

from itrlib.cli import main


def test_train_then_eval_every_protocol(smoke_data, tmp_path, capsys):
    args = ["train", "--config", "baseline_smoke", "--no-progress", f"data.root={smoke_data}",
            f"output_dir={tmp_path}", "name=cli", "model.embed_size=32", "train.batch_size=16",
            "train.max_steps_per_epoch=3"]
    assert main(args) == 0
    run = tmp_path / "cli"
    for name in ("config.yaml", "metrics.jsonl", "best.pt", "last.pt", "train_summary.json"):
        assert (run / name).is_file(), name
    assert main(["eval", "--run", str(run), "--protocol", "f30k1k", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--protocol", "coco1k", "coco5k", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"coco1k", "coco5k"} and set(printed["coco5k"]["tied_queries"]) == {"i2t", "t2i"}
    for protocol in ("f30k1k", "coco1k", "coco5k"):
        result = json.loads((run / f"eval-{protocol}.json").read_text())
        metrics = result["metrics"]
        assert set(metrics) >= {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"}
        assert abs(metrics["rsum"] - sum(metrics[k] for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1",
                                                                "t2i_r5", "t2i_r10"))) < 1e-6
        assert len(result["ranks"]["t2i"]) == 5 * len(result["ranks"]["i2t"])
    assert len(json.loads((run / "eval-coco1k.json").read_text())["folds"]) == 5


def test_unknown_key_is_reported_without_traceback(tmp_path, capsys):
    assert main(["train", "--config", "baseline_smoke", "train.epoch=3", f"output_dir={tmp_path}"]) == 2
    assert "unknown config key 'epoch'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_missing_data_is_reported(tmp_path, capsys):
    assert main(["train", "--config", "baseline_smoke", f"data.root={tmp_path / 'nowhere'}",
                 f"output_dir={tmp_path}"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "itrlib", "presets"], capture_output=True, text=True, check=True)
    assert "baseline_embedded" in out.stdout
