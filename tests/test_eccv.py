"""ECCV Caption / CxC metrics: our ranked lists against the eccv-caption package called directly on full
rankings, the COCO id checks, and the clear error when the package is absent."""

from pathlib import Path

import numpy as np
import pytest

import itrlib.evaluation.eccv as eccv
from itrlib.errors import DataError, ItrlibError


@pytest.fixture(scope="module")
def package():
    pytest.importorskip("eccv_caption")  # installed by make venv (the eccv extra)
    return eccv.package_metrics()


def _test_images(package) -> np.ndarray:
    """The package's own 5K test images, in its test order (5 consecutive caption ids per image)."""
    captions = np.load(Path(eccv.eccv_caption.metrics.CUR_DIR) / "data" / "coco_test_ids.npy")
    return np.array([package.coco_gts["t2i"][int(c)][0] for c in captions[::5]])


def _top(scores: np.ndarray, depth: int) -> np.ndarray:
    """Per row, the columns of the ``depth`` highest scores, best first, equal scores by column (what a full
    stable sort of the negated scores puts first): every score at least the row's depth-th highest is a
    candidate, ties at that boundary included, and the candidates are sorted stably."""
    boundary = -np.partition(-scores, depth - 1, axis=1)[:, depth - 1]
    out = np.empty((scores.shape[0], depth), dtype=np.int64)
    for row, (values, lowest) in enumerate(zip(scores, boundary, strict=True)):
        candidates = np.flatnonzero(values >= lowest)
        out[row] = candidates[np.argsort(-values[candidates], kind="stable")][:depth]
    return out


def _full_rankings(scores: np.ndarray, image_ids: np.ndarray, caption_ids: np.ndarray, depth: int):
    """Each query's first ``depth`` items of a full stable sort of its scores, best first."""
    i2t = dict(zip(image_ids.tolist(), caption_ids[_top(scores, depth)].tolist(), strict=True))
    t2i = dict(zip(caption_ids.tolist(), image_ids[_top(np.ascontiguousarray(scores.T), depth)].tolist(), strict=True))
    return i2t, t2i


def test_metrics_equal_the_package_called_directly_on_full_rankings(package):
    images = _test_images(package)
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(images)  # a folder may list the test images in any order
    scores = rng.standard_normal((5000, 25000), dtype=np.float32)
    scores[np.arange(25000) // 5, np.arange(25000)] += 2.5  # a model that finds its own captions often
    ours = eccv.eccv_metrics(scores, shuffled, metrics=package)
    caption_ids = np.concatenate([sorted(package.coco_gts["i2t"][int(i)]) for i in shuffled])
    i2t, t2i = _full_rankings(scores, shuffled, caption_ids, depth=1000)
    direct = package.compute_all_metrics(i2t, t2i, target_metrics=eccv.TARGET_METRICS, Ks=(1, 5, 10))
    assert set(ours) == set(direct) == {"eccv_map_at_r", "eccv_rprecision", "eccv_r1", "cxc_r1", "cxc_r5",
                                         "cxc_r10"}
    for name, by_side in direct.items():
        for side, value in by_side.items():
            assert ours[name][side] == pytest.approx(100 * value, abs=1e-9), (name, side)
    assert 10 < ours["cxc_r10"]["t2i"] < 100  # the planted signal is found, not all of it


def test_equal_scores_rank_by_index_and_the_depth_is_the_largest_positive_set(package):
    ids = np.array([10, 11, 12, 13])
    assert eccv.ranked_ids(np.array([[0.5, 0.9, 0.5, 0.1]], dtype=np.float32), ids, 3).tolist() == [[11, 10, 12]]
    assert eccv._depth(package) == 48


def test_ids_that_are_not_the_coco_test_images_are_named(package):
    images = _test_images(package)
    with pytest.raises(DataError, match=r"my_ids\.txt: 40 images; .* need the 5000 images"):
        eccv.coco_caption_ids(images[:40], package, "my_ids.txt")
    wrong = images.copy()
    wrong[3] = 123456789
    with pytest.raises(DataError, match=r"1 of 5000 ids are not COCO 5K test image ids \(first: 123456789\)"):
        eccv.coco_caption_ids(wrong, package)
    twice = images.copy()
    twice[1] = twice[0]
    with pytest.raises(DataError, match="more than once"):
        eccv.coco_caption_ids(twice, package)
    with pytest.raises(DataError, match=r"got \(40, 200\)"):
        eccv.eccv_metrics(np.zeros((40, 200)), images[:40], metrics=package)


def test_without_the_package_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(eccv, "eccv_caption", None)
    with pytest.raises(ItrlibError, match=r'eccv-caption package, which is not installed: pip install "eccv-caption'):
        eccv.package_metrics()
