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
    config = load_config("baseline_f30k", ["train.epochs=3", "train.lr=1e-3", "model.embed_size=64",
                                           "train.lr_decay_epochs=[1, 2]", "data.val_max_images=null",
                                           "train.loss_weights={triplet: 2}"])
    assert config.train.epochs == 3 and config.train.lr == 1e-3 and config.model.embed_size == 64
    assert config.train.lr_decay_epochs == [1, 2] and config.data.val_max_images is None
    assert config.train.loss_weights == {"triplet": 2.0}


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert load_config("baseline_f30k", ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer"):
        load_config("baseline_f30k", ["train.epochs=2.5"])


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", r"unknown config key 'epoch' in train; did you mean epochs"),
    ("model.embedsize=3", "unknown config key 'embedsize' in model"),
    ("trian.epochs=3", "unknown config key 'trian' in top-level"),
    ("train.amp=maybe", "expected true/false"),
    ("train.epochs", "not of the form"),
])
def test_bad_overrides_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("baseline_f30k", [override])


def test_model_name_required_and_known():
    with pytest.raises(ConfigError, match=r"model\.name is required"):
        from_dict({"model": {}})
    with pytest.raises(ConfigError, match=r"unknown model\.name 'nope'"):
        from_dict({"model": {"name": "nope"}})


def test_unknown_preset():
    with pytest.raises(ConfigError, match="no config file"):
        load_config("no_such_preset")
