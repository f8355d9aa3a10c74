"""Config loading: presets, overrides, unknown keys and wrong types are clear errors."""

import pytest

from itrlib.config import dump_yaml, from_dict, list_presets, load_config, to_dict
from itrlib.errors import ConfigError


def test_presets_load_and_round_trip(tmp_path):
    for name in list_presets():
        config = load_config(name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(dump_yaml(config))
        assert to_dict(load_config(path)) == to_dict(config)


def test_overrides_are_typed():
    config = load_config("vse_f30k", ["train.epochs=3", "train.lr=1e-3", "model.embed_size=64",
                                           "train.lr_decay_epochs=[1, 2]", "data.val_max_images=null",
                                           "train.loss_weights={triplet: 2}"])
    assert config.train.epochs == 3 and config.train.lr == 1e-3 and config.model.embed_size == 64
    assert config.train.lr_decay_epochs == [1, 2] and config.data.val_max_images is None
    assert config.train.loss_weights == {"triplet": 2.0}


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert load_config("vse_f30k", ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer"):
        load_config("vse_f30k", ["train.epochs=2.5"])


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", r"unknown config key 'epoch' in train; did you mean epochs"),
    ("model.embedsize=3", "unknown config key 'embedsize' in model"),
    ("trian.epochs=3", "unknown config key 'trian' in top-level"),
    ("train.amp=maybe", "expected true/false"),
    ("train.epochs", "not of the form"),
])
def test_bad_overrides_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("vse_f30k", [override])


def test_model_name_required_and_known():
    with pytest.raises(ConfigError, match=r"model\.name is required"):
        from_dict({"model": {}})
    with pytest.raises(ConfigError, match=r"unknown model\.name 'nope'"):
        from_dict({"model": {"name": "nope"}})


def test_unknown_preset():
    with pytest.raises(ConfigError, match="no config file"):
        load_config("no_such_preset")


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=-4", r"train\.batch_size must be >= 1, got -4"),
    ("train.batch_size=0", r"train\.batch_size must be >= 1, got 0"),
    ("train.epochs=0", r"train\.epochs must be >= 1, got 0"),
    ("train.lr=0", r"train\.lr must be > 0, got 0\.0"),
    ("train.lr=.nan", r"train\.lr must be a finite number, got nan"),
    ("train.weight_decay=-1e-4", r"train\.weight_decay must be >= 0"),
    ("train.lr_decay_factor=0", r"train\.lr_decay_factor must be > 0"),
    ("train.grad_clip=-1", r"train\.grad_clip must be >= 0"),
    ("train.log_every=0", r"train\.log_every must be >= 1, got 0"),
    ("train.checkpoint_every=-1", r"train\.checkpoint_every must be >= 0"),
    ("train.eval_batch_size=0", r"train\.eval_batch_size must be >= 1"),
    ("train.max_steps_per_epoch=0", r"train\.max_steps_per_epoch must be >= 1 or null, got 0"),
    ("train.lr_decay_epochs=[3, -1]", r"train\.lr_decay_epochs\[1\] must be >= 0, got -1"),
    ("train.device=gpu", r"train\.device must be one of auto, cpu, cuda, cuda:N .*got 'gpu'"),
    ("train.device=cuda:x", r"train\.device must be one of"),
    ("train.adamw=fast", r"train\.adamw must be one of foreach, fused, got 'fast'"),
    ("data.region_keep_prob=0", r"data\.region_keep_prob must be in \(0, 1\], got 0\.0"),
    ("data.region_keep_prob=1.5", r"data\.region_keep_prob must be in \(0, 1\], got 1\.5"),
    ("data.check_features=all", r"data\.check_features must be one of full, sample, none, got 'all'"),
    ("data.num_workers=-1", r"data\.num_workers must be >= 0"),
    ("data.val_max_images=0", r"data\.val_max_images must be >= 1 or null"),
    ("text.encoder=lstm", r"text\.encoder must be one of bert, bigru, got 'lstm'"),
    ("text.vocab_min_count=0", r"text\.vocab_min_count must be >= 1"),
])
def test_out_of_range_values_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("vse_smoke", [override])


@pytest.mark.parametrize("override", ["train.device=cuda:1", "train.device=cpu", "data.region_keep_prob=1",
                                      "train.checkpoint_every=0", "train.grad_clip=0", "train.lr_decay_epochs=[]",
                                      "train.max_steps_per_epoch=null", "data.val_max_images=null",
                                      "train.adamw=foreach"])
def test_boundary_values_are_accepted(override):
    load_config("vse_smoke", [override])


def test_bad_value_on_the_command_line_writes_nothing(tmp_path, capsys):
    from itrlib.cli import main

    assert main(["train", "--config", "vse_smoke", f"output_dir={tmp_path}", "train.batch_size=0"]) == 2
    assert "train.batch_size must be >= 1, got 0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def _write_preset(folder, name, text):
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_preset_of_another_model_does_not_inherit_the_base_model_fields(tmp_path):
    from itrlib.models.afa import AFAConfig

    base = _write_preset(tmp_path, "vse_base", "model:\n  name: vse\n  embed_size: 48\n  gpo_hidden: 8\n")
    child = _write_preset(tmp_path, "afa_child", f"base: {base}\nmodel:\n  name: afa\n")
    assert to_dict(load_config(child))["model"] == to_dict(load_config({"model": {"name": "afa"}}))["model"]
    assert load_config(child).model.embed_size == AFAConfig().embed_size != 48
    same = _write_preset(tmp_path, "vse_child", f"base: {base}\nmodel:\n  name: vse\n  margin: 0.1\n")
    assert (load_config(same).model.embed_size, load_config(same).model.gpo_hidden) == (48, 8)
    unnamed = _write_preset(tmp_path, "vse_unnamed", f"base: {base}\nmodel:\n  margin: 0.1\n")
    assert load_config(unnamed).model.embed_size == 48


def test_field_of_the_base_model_is_unknown_to_another_model(tmp_path):
    base = _write_preset(tmp_path, "vse_base", "model:\n  name: vse\n")
    child = _write_preset(tmp_path, "afa_child", f"base: {base}\nmodel:\n  name: afa\n  gpo_hidden: 8\n")
    with pytest.raises(ConfigError, match="unknown config key 'gpo_hidden' in model"):
        load_config(child)


def test_afa_presets_state_their_embedding_size():
    assert load_config("afa_smoke").model.embed_size == load_config("vse_smoke").model.embed_size == 64
    for profile in ("embedded", "f30k", "coco"):
        assert load_config(f"afa_{profile}").model.embed_size == 1024
