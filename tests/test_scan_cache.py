"""Training refuses non-finite features before the first step; the full scan is cached per file version."""

import json
import os
import shutil

import numpy as np
import pytest

from itrlib.data import scan_cache
from itrlib.data.precomp import SAMPLE_CHECK_IMAGES, open_split
from itrlib.engine.sampler import EpochBatchSampler
from itrlib.engine.trainer import Trainer
from itrlib.errors import DataError


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(scan_cache.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def scans(monkeypatch):
    """Paths scanned by itrlib.data.scan_cache, in order."""
    seen = []
    original = scan_cache._scan

    def counting(path, progress):
        seen.append(path.name)
        return original(path, progress)

    monkeypatch.setattr(scan_cache, "_scan", counting)
    return seen


def _never_drawn_image(n_images: int, caps_per_image: int = 5) -> int:
    """A train image that neither the open-time sample check nor one 16-caption step of epoch 0 touches."""
    sampled = set(np.linspace(0, n_images - 1, SAMPLE_CHECK_IMAGES + 2).round().astype(int).tolist())
    sampler = EpochBatchSampler(n_images * caps_per_image, 16, seed=0, max_batches=1)
    drawn = {index // caps_per_image for batch in sampler.batches() for index in batch}
    return min(set(range(n_images)) - sampled - drawn)


def test_bad_image_the_sampler_never_draws_is_refused(smoke_data, tmp_path, fast_config, cache_dir, scans):
    data = shutil.copytree(smoke_data, tmp_path / "data")
    features = np.load(data / "train_ims.npy", mmap_mode="r+")
    bad = _never_drawn_image(features.shape[0])
    features[bad, 3, 7] = np.nan
    features.flush()
    del features
    config = fast_config(data, tmp_path, "bad", "train.epochs=1", "train.max_steps_per_epoch=1")
    for _ in range(2):  # the second time the cached verdict refuses without a scan
        with pytest.raises(DataError, match=rf"train_ims\.npy: image {bad} has non-finite features"):
            Trainer(config, progress=False)
    assert scans == ["train_ims.npy"]
    assert not (tmp_path / "bad").exists()  # nothing was written into the run folder


def test_clean_folder_is_scanned_once_per_file_version(smoke_data, tmp_path, fast_config, cache_dir, scans):
    data = shutil.copytree(smoke_data, tmp_path / "data")
    before = sorted(p.name for p in data.iterdir())
    for name in ("a", "b"):
        Trainer(fast_config(data, tmp_path, name, "train.epochs=1"), progress=False).close()
    assert scans == ["train_ims.npy", "dev_ims.npy"]  # the second run is a cache hit
    assert sorted(p.name for p in data.iterdir()) == before  # nothing written into the data folder
    assert (cache_dir / scan_cache.CACHE_FILE).is_file()

    stat = (data / "train_ims.npy").stat()
    os.utime(data / "train_ims.npy", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    scan_cache.check_split_features(open_split(data, "train"))
    scan_cache.check_split_features(open_split(data, "dev", max_images=10))
    assert scans == ["train_ims.npy", "dev_ims.npy", "train_ims.npy"]


def test_corrupt_cache_only_costs_a_rescan(smoke_data, cache_dir, scans):
    cache_dir.mkdir()
    (cache_dir / scan_cache.CACHE_FILE).write_text("{not json")
    split = open_split(smoke_data, "dev")
    scan_cache.check_split_features(split)
    scan_cache.check_split_features(split)
    assert scans == ["dev_ims.npy"]
    entry = json.loads((cache_dir / scan_cache.CACHE_FILE).read_text())[str(split.images_path.resolve())]
    assert entry["error"] is None and entry["size"] == split.images_path.stat().st_size


def test_unwritable_cache_warns_and_rescans(smoke_data, tmp_path, monkeypatch, scans):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(scan_cache.CACHE_ENV, str(blocker / "cache"))
    split = open_split(smoke_data, "dev")
    for _ in range(2):
        with pytest.warns(RuntimeWarning, match="cannot write the feature scan cache"):
            scan_cache.check_split_features(split)
    assert scans == ["dev_ims.npy", "dev_ims.npy"]


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv(scan_cache.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert scan_cache.cache_path() == tmp_path / ".cache" / "itrlib" / "feature_scans.json"
