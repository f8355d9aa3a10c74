"""End-to-end: the CLI trains, evaluates under each protocol, reports errors cleanly, documents every option
and checks data folders."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from itrlib.cli import PROG, _parser, main
from itrlib.data.precomp import SPLITS


def test_train_then_eval_every_protocol(smoke_data, tmp_path, capsys):
    args = ["train", "--config", "vse_smoke", "--no-progress", f"data.root={smoke_data}",
            f"output_dir={tmp_path}", "name=cli", "model.embed_size=32", "train.batch_size=16",
            "train.max_steps_per_epoch=3"]
    assert main(args) == 0
    run = tmp_path / "cli"
    for name in ("config.yaml", "metrics.jsonl", "best.pt", "train_summary.json"):
        assert (run / name).is_file(), name
    assert not (run / "last.pt").exists()  # smoke presets keep no resume state once finished
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
    # ECCV Caption metrics need the COCO 5K test images: the synthetic testall is refused in one line
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--metrics", "eccv", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "testall_ids.txt: 50 images" in err and "COCO 5K test split" in err
    assert not (run / "eccv-testall.json").exists()
    assert main(["eval", "--run", str(run), "--no-progress"]) == 2
    assert "--protocol names the protocols of --metrics recall" in capsys.readouterr().err
    assert main(["eval", "--run", str(run), "--metrics", "eccv", "--protocol", "f30k1k"]) == 2


def test_unknown_key_is_reported_without_traceback(tmp_path, capsys):
    assert main(["train", "--config", "vse_smoke", "train.epoch=3", f"output_dir={tmp_path}"]) == 2
    assert "unknown config key 'epoch'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_missing_data_is_reported(tmp_path, capsys):
    assert main(["train", "--config", "vse_smoke", f"data.root={tmp_path / 'nowhere'}",
                 f"output_dir={tmp_path}"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "itrlib", "presets"], capture_output=True, text=True, check=True)
    assert "vse_embedded" in out.stdout


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """The parser and every (sub-)subcommand parser, with the command words leading to it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def test_help_lists_every_subcommand_on_one_line(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    nested = [(path, parser) for path, parser in _parsers(_parser()) if _subcommands(parser)]
    assert [path for path, _ in nested] == [(), ("data",)]
    for path, parser in nested:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        summaries = {a.dest: a.help for a in _subcommands(parser)._choices_actions}
        assert set(summaries) == set(_subcommands(parser).choices)
        for name, summary in summaries.items():
            assert summary and "\n" not in summary, name
            assert re.search(rf"^ +{re.escape(name)} +{re.escape(summary)}$", out, re.MULTILINE), (name, out)
    assert {"train", "eval", "eval-scores", "composite", "data", "presets"} <= set(_subcommands(_parser()).choices)


def test_module_help_lists_presets():
    out = subprocess.run([sys.executable, "-m", "itrlib", "--help"], capture_output=True, text=True, check=True,
                         env={**os.environ, "COLUMNS": "80"}).stdout
    for name in ("train", "eval", "eval-scores", "composite", "data", "presets"):
        assert re.search(rf"^ +{name} +\S", out, re.MULTILINE), name
    assert "`" not in out


def test_help_has_no_markup_and_names_runnable_commands():
    commands = set(_subcommands(_parser()).choices)
    for path, parser in _parsers(_parser()):
        text = parser.format_help()
        assert not re.search(r"`|:class:|:func:|\*\*", text), (path, text)
        for match in re.finditer(r"itrlib ([\w-]+)", text):
            if match.group(1) in commands or match.group(1) == "COMMAND":
                assert text[:match.start()].endswith("python -m "), (path, match.group(0))
    assert f"{PROG} presets" in dict(_parsers(_parser()))[("train",)].format_help()
    top = " ".join(_parser().format_help().split())
    assert ".venv/bin/python -m itrlib" in top and "make" in top


def test_every_option_has_help_and_default():
    checked = 0
    for path, parser in _parsers(_parser()):
        formatter = parser._get_formatter()
        in_required_group = {id(a) for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = (*path, action.option_strings[0] if action.option_strings else action.dest)
            assert action.help and action.help.strip(), name
            text = formatter._expand_help(action)
            checked += 1
            if action.required:
                continue
            if id(action) in in_required_group:
                assert "required" in text, name
                continue
            assert "(default: " in text, name
            assert not re.search(r"\(default: (None|False|True|\[\])\)", text), name
            if action.default is not None and action.default is not False and action.default != []:
                assert f"(default: {action.default})" in text, name
    assert checked >= 30


def _copy_splits(source, target, splits):
    target.mkdir()
    for split in splits:
        for kind in ("ims.npy", "caps.txt", "ids.txt"):
            shutil.copy(source / f"{split}_{kind}", target / f"{split}_{kind}")
    return target


def test_data_check_defaults_to_every_split_with_testall(smoke_data, capsys):
    assert "testall" in SPLITS
    assert main(["data", "check", "--data-root", str(smoke_data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(SPLITS)
    assert all(line.endswith(": OK") for line in lines), lines
    assert lines[-1].startswith("testall: 50 images")


def test_data_check_without_testall_reports_it_absent(smoke_data, tmp_path, capsys):
    f30k = _copy_splits(smoke_data, tmp_path / "f30k", ("train", "dev", "test"))
    assert main(["data", "check", "--data-root", str(f30k)]) == 0
    out = capsys.readouterr().out
    for split in ("train", "dev", "test"):
        assert re.search(rf"^{split}: \d+ images .*: OK$", out, re.MULTILINE), split
    assert re.search(r"^testall: not present \(COCO only", out, re.MULTILINE), out
    assert main(["data", "check", "--data-root", str(f30k), "--splits", "test", "testall"]) == 2
    err = capsys.readouterr().err
    assert "split 'testall': missing file(s)" in err


def test_data_check_fails_when_no_split_is_present(smoke_data, tmp_path, capsys):
    (tmp_path / "val_caps.txt").write_text("a caption\n")
    assert main(["data", "check", "--data-root", str(tmp_path)]) == 2
    assert "no split to check" in capsys.readouterr().err
    partial = _copy_splits(smoke_data, tmp_path / "partial", ("dev",))
    (partial / "dev_caps.txt").unlink()
    assert main(["data", "check", "--data-root", str(partial)]) == 2
    assert "split 'dev': missing file(s)" in capsys.readouterr().err
