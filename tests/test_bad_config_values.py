"""Bad configuration values fail at load, or when the run opens its data and text encoder, before training:
one ``error:`` line naming the key (and the file), exit code 2, no run folder left behind."""

import dataclasses
import re
import shutil
import types
import typing
from pathlib import Path

import numpy as np
import pytest

from itrlib.cli import main
from itrlib.config import SECTIONS, load_config
from itrlib.errors import ConfigError
from itrlib.models import model_config_class

PRESETS = {"vse": "vse_smoke", "afa": "afa_smoke", "user": "user_smoke", "mvsen": "mvsen_smoke"}
"""The smoke preset of every model (``model.name`` -> preset)."""


def _is_float(annotation: object) -> bool:
    """``float`` or a union holding it (``float | None``)."""
    return annotation is float or (isinstance(annotation, types.UnionType) and float in typing.get_args(annotation))


def _float_keys(cls: type, section: str) -> list[str]:
    """Dotted keys of the float fields of the config dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return [f"{section}.{f.name}" for f in dataclasses.fields(cls) if _is_float(hints[f.name])]


def _every_float_key() -> list[tuple[str, str]]:
    """(preset, key) for every float field of every section and of every model, and a loss weight."""
    keys = [("vse_smoke", key) for section, cls in SECTIONS.items() for key in _float_keys(cls, section)]
    keys += [(preset, key) for name, preset in PRESETS.items()
             for key in _float_keys(model_config_class(name), "model")]
    return [*keys, ("vse_smoke", "train.loss_weights.triplet")]


def _train(capsys, tmp_path: Path, preset: str, *overrides: str) -> str:
    """Run ``python -m itrlib train``; assert exit code 2, one ``error:`` line on stderr and no run folder."""
    runs = tmp_path / "runs"
    code = main(["train", "--config", preset, f"output_dir={runs}", "name=bad", *overrides, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert not (runs / "bad").exists()
    return err


@pytest.fixture
def data_copy(smoke_data, tmp_path) -> Path:
    """A copy of the smoke dataset that a test may spoil."""
    return shutil.copytree(smoke_data, tmp_path / "data")


# -- 1. ranges: negative margins and weights, sizes below 1, probabilities outside [0, 1] -------------------
@pytest.mark.parametrize(("preset", "key"), [
    ("afa_smoke", "model.margin"), ("afa_smoke", "model.margin_mixed"), ("afa_smoke", "model.mean_warmup_epochs"),
    ("vse_smoke", "model.margin"), ("vse_smoke", "model.mean_warmup_epochs"),
    ("user_smoke", "model.margin"), ("user_smoke", "model.mini_batch_weight"), ("mvsen_smoke", "model.margin"),
    ("mvsen_smoke", "model.text_margin"), ("mvsen_smoke", "model.delta"), ("afa_smoke", "model.bert_lr_factor"),
    ("vse_smoke", "train.loss_weights.triplet"), ("vse_smoke", "train.seed"),
])
def test_negative_margins_weights_and_counts_are_refused_by_every_model(preset, key):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')} must be >= 0, got -1(\.0)?$"):
        load_config(preset, [f"{key}=-1"])


@pytest.mark.parametrize(("preset", "override", "message"), [
    ("afa_smoke", "model.embed_size=0", "model.embed_size must be >= 1, got 0"),
    ("afa_smoke", "model.mlp_hidden=0", "model.mlp_hidden must be >= 1 or null, got 0"),
    ("afa_smoke", "model.word_dim=0", "model.word_dim must be >= 1, got 0"),
    ("vse_smoke", "model.mlp_hidden=-1", "model.mlp_hidden must be >= 1 or null, got -1"),
    ("vse_smoke", "model.embed_size=1", "model.embed_size must be >= 2 when model.mlp_hidden is null"),
    ("vse_smoke", "model.gpo_hidden=0", "model.gpo_hidden must be >= 1, got 0"),
    ("vse_smoke", "model.gpo_pe_dim=3", "model.gpo_pe_dim must be even"),
    ("user_smoke", "model.mlp_hidden=-1", "model.mlp_hidden must be >= 1 or null, got -1"),
    ("user_smoke", "model.gpo_pe_dim=0", "model.gpo_pe_dim must be >= 1, got 0"),
    ("mvsen_smoke", "model.text_proj=0", "model.text_proj must be >= 1 or null, got 0"),
    ("mvsen_smoke", "model.gru_hidden=2", "model.gru_hidden must be >= 4 when model.text_proj is null"),
    ("user_smoke", "model.sge_dropout=1", r"model.sge_dropout must be in [0, 1), got 1.0"),
    ("user_smoke", "model.momentum=-0.1", r"model.momentum must be in [0, 1], got -0.1"),
    ("mvsen_smoke", "model.dropout=1", r"model.dropout must be in [0, 1), got 1.0"),
    ("mvsen_smoke", "model.beta=1.5", r"model.beta must be in [0, 1], got 1.5"),
    ("afa_smoke", "model.merge_ratio=0.6", r"model.merge_ratio must be in [0, 0.5], got 0.6"),
    ("afa_smoke", "model.beta_t=0", "model.beta_t must be > 0, got 0.0"),
])
def test_sizes_and_probabilities_out_of_range_are_refused_naming_the_key(preset, override, message):
    with pytest.raises(ConfigError) as error:
        load_config(preset, [override])
    assert str(error.value).startswith(message)


# -- 2. every float field of every section must be finite ----------------------------------------------
@pytest.mark.parametrize(("preset", "key"), _every_float_key())
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_every_float_field_must_be_finite(preset, key, value):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')} must be a finite number, got "):
        load_config(preset, [f"{key}={value}"])


# -- 1-3 on the command line: one line naming the key, exit 2, nothing created ------------------------
@pytest.mark.parametrize(("preset", "override", "message"), [
    ("afa_smoke", "model.margin=-1", "error: model.margin must be >= 0, got -1.0"),
    ("vse_smoke", "model.margin=.nan", "error: model.margin must be a finite number, got nan"),
    ("vse_smoke", "train.lr=.inf", "error: train.lr must be a finite number, got inf"),
    ("vse_smoke", "model.mlp_hidden=-1", "error: model.mlp_hidden must be >= 1 or null, got -1"),
    ("afa_smoke", "model.embed_size=0", "error: model.embed_size must be >= 1, got 0"),
])
def test_bad_values_fail_at_load_on_the_command_line(capsys, tmp_path, smoke_data, preset, override, message):
    assert _train(capsys, tmp_path, preset, f"data.root={smoke_data}", override).strip() == message


# -- 4-6: values the data or the text encoder contradict, refused before training ----------------------
def test_user_num_slots_must_match_the_regions_per_image(capsys, tmp_path, smoke_data):
    err = _train(capsys, tmp_path, "user_smoke", f"data.root={smoke_data}", "model.num_slots=20")
    assert "model.num_slots=20" in err and f"the 36 regions per image of {smoke_data / 'train_ims.npy'}" in err


def test_user_num_slots_is_checked_before_evaluating_other_data(smoke_data):
    from itrlib.data.precomp import open_split
    from itrlib.evaluation.evaluate import evaluate_split
    from itrlib.evaluation.protocols import Protocol

    split = open_split(smoke_data, "test")
    # a model whose config is all that evaluate_split reads before the check
    model = types.SimpleNamespace(config=load_config("user_smoke", ["model.num_slots=20"]).model)
    with pytest.raises(ConfigError, match=rf"model\.num_slots=20 does not match the 36 regions per image of "
                                          rf"{re.escape(str(smoke_data / 'test_ims.npy'))} \(split 'test'\)"):
        evaluate_split(model, split, tokenizer=None, protocols=[Protocol("f30k1k", "test", 1, "")])


def test_user_slot_norm_refuses_region_dropout_at_the_start_of_a_run(capsys, tmp_path, smoke_data):
    load_config("user_smoke", ["data.region_keep_prob=0.8"])  # evaluation drops no region: loads
    err = _train(capsys, tmp_path, "user_smoke", f"data.root={smoke_data}", "data.region_keep_prob=0.8")
    assert "data.region_keep_prob=0.8 drops regions at training" in err and "model.sge_local_norm=slot" in err


def test_mvsen_bert_layers_must_fit_the_text_encoder(capsys, tmp_path, smoke_data):
    err = _train(capsys, tmp_path, "mvsen_smoke", f"data.root={smoke_data}", "model.bert_layers=10")
    assert "model.bert_layers=10 exceeds the depth of the text encoder in " in err
    assert "6 hidden layers" in err and "text.bert_path" in err


def test_batch_size_above_the_training_pairs_is_refused(capsys, tmp_path, smoke_data):
    err = _train(capsys, tmp_path, "vse_smoke", f"data.root={smoke_data}", "train.batch_size=601")
    assert "train.batch_size=601 exceeds the 600 training pairs (captions) of split 'train'" in err


# -- 7-8: side files whose width differs from the model's, named with their split -----------------------
def _widen_labels(path: Path, extra: int) -> None:
    rows = [line + " 0" * extra for line in path.read_text().splitlines()]
    path.write_text("\n".join(rows) + "\n")


def test_mvsen_refuses_a_dev_label_file_wider_than_num_labels(capsys, tmp_path, data_copy):
    _widen_labels(data_copy / "dev_label.txt", 2)
    err = _train(capsys, tmp_path, "mvsen_smoke", f"data.root={data_copy}")
    assert f"{data_copy / 'dev_label.txt'}: side input 'label' of split 'dev' has 80 values per row" in err
    assert "the model expects 78 (model.num_labels=78)" in err


@pytest.mark.parametrize("case", ["narrower labels", "wider labels", "clip"])
def test_side_file_width_mismatch_names_file_split_widths_and_key(capsys, tmp_path, data_copy, case):
    if case == "clip":
        preset, overrides, found, expected = "user_smoke", ["model.enhancement=cge", "model.clip_dim=256"], 512, 256
        key, path = "model.clip_dim", data_copy / "train_clip.npy"
    else:
        preset, overrides, expected, key = "mvsen_smoke", [], 78, "model.num_labels"
        path = data_copy / "train_label.txt"
        if case == "wider labels":
            _widen_labels(path, 3)
            found = 81
        else:
            labels = np.loadtxt(path, dtype=np.int64)[:, :70]
            np.savetxt(path, labels, fmt="%d")
            found = 70
    err = _train(capsys, tmp_path, preset, f"data.root={data_copy}", *overrides)
    assert f"{path}: side input '{path.stem.split('_')[1]}' of split 'train' has {found} values per row" in err
    assert f"the model expects {expected} ({key}={expected})" in err
