"""profiles.ensure_data: builds a missing embedded dataset, refuses one of another generator version."""

import json

import pytest

from itrlib.data.synth import GENERATOR_VERSION
from itrlib.errors import DataError
from itrlib.suite.profiles import PROFILES, ensure_data, get_profile, run_config


def write_card(root, version: str) -> None:
    root.mkdir(parents=True)
    (root / "dataset_card.json").write_text(json.dumps({"generator_version": version}), encoding="utf-8")


def test_a_dataset_of_the_current_generator_is_used_as_it_is(tmp_path):
    root = tmp_path / "synthetic"
    write_card(root, GENERATOR_VERSION)
    assert ensure_data(run_config("vse", "embedded", data_root=str(root)), "embedded") == root
    assert [p.name for p in root.iterdir()] == ["dataset_card.json"]  # nothing built or rewritten


def test_a_dataset_of_an_older_generator_is_an_error_that_says_how_to_rebuild(tmp_path):
    root = tmp_path / "synthetic"
    write_card(root, "itrlib-synth-1.0")
    with pytest.raises(DataError, match=r"itrlib-synth-1\.0.*_clip\.npy.*make data.*--size small"):
        ensure_data(run_config("vse", "embedded", data_root=str(root)), "embedded")
    assert [p.name for p in root.iterdir()] == ["dataset_card.json"]  # the old files are left alone


def test_real_data_profiles_never_build_or_check(tmp_path):
    root = tmp_path / "f30k_precomp"
    assert ensure_data(run_config("vse", "f30k", data_root=str(root)), "f30k") == root
    assert not root.exists()


def test_only_the_smoke_profile_reduces_the_studies():
    assert [name for name in PROFILES if get_profile(name).reduced_studies] == ["smoke"]
    assert get_profile("smoke").study_steps == 9 and get_profile("embedded").study_steps is None
