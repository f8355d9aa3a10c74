"""Fused-pass ranks and recalls against slow, obviously correct per-query loops."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from itrlib.evaluation import metrics
from itrlib.evaluation.metrics import Ranks, recall_summary, retrieval_metrics


def i2t_ranks(sims, caps_per_image: int = 5, chunk: int = 1024, **options) -> Ranks:
    """The image-to-text ranks of :func:`retrieval_metrics` (the one entry point)."""
    return retrieval_metrics(sims, caps_per_image, chunk=chunk, **options)[1]["i2t"]


def t2i_ranks(sims, caps_per_image: int = 5, chunk: int = 1024, **options) -> Ranks:
    """The text-to-image ranks of :func:`retrieval_metrics`."""
    return retrieval_metrics(sims, caps_per_image, chunk=chunk, **options)[1]["t2i"]

CPI = 5
BACKENDS = ["numba", "torch"]


def first_hit(scores: np.ndarray, is_gt: np.ndarray) -> int:
    """Sort descending, equal scores with every ground truth after the non-ground truths (pessimistic);
    return the position of the first ground truth."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], bool(is_gt[j])))
    return next(pos for pos, j in enumerate(order) if is_gt[j])


def slow_ranks(sims: np.ndarray, cpi: int = CPI) -> tuple[np.ndarray, np.ndarray]:
    n_img, n_cap = sims.shape
    i2t = [first_hit(sims[i], np.arange(n_cap) // cpi == i) for i in range(n_img)]
    t2i = [first_hit(sims[:, c], np.arange(n_img) == c // cpi) for c in range(n_cap)]
    return np.array(i2t), np.array(t2i)


def pessimistic_reference(sims: np.ndarray, cpi: int) -> dict[str, np.ndarray]:
    """Per query: rank = number of non-ground-truth items scoring >= the best ground truth; top-1 = first
    index among equal maxima."""
    n_img, n_cap = sims.shape
    out: dict[str, list[int]] = {"i2t": [], "i2t_top1": [], "t2i": [], "t2i_top1": []}
    for i in range(n_img):
        is_gt = np.arange(n_cap) // cpi == i
        out["i2t"].append(int(np.count_nonzero(sims[i, ~is_gt] >= sims[i, is_gt].max())))
        out["i2t_top1"].append(int(np.flatnonzero(sims[i] == sims[i].max())[0]))
    for c in range(n_cap):
        column, gt = sims[:, c], c // cpi
        out["t2i"].append(int(np.count_nonzero(np.delete(column, gt) >= column[gt])))
        out["t2i_top1"].append(int(np.flatnonzero(column == column.max())[0]))
    return {key: np.array(value) for key, value in out.items()}


def stable_reference(sims: np.ndarray, cpi: int) -> dict[str, np.ndarray]:
    """The official loops with a stable sort: ``inds = np.argsort(scores, kind="stable")[::-1]``; rank =
    ``np.where(inds == gt)[0][0]`` (i2t: minimum over the image's captions); top-1 = ``inds[0]``."""
    n_img, n_cap = sims.shape
    out: dict[str, list[int]] = {"i2t": [], "i2t_top1": [], "t2i": [], "t2i_top1": []}
    for i in range(n_img):
        inds = np.argsort(sims[i], kind="stable")[::-1]
        out["i2t"].append(min(int(np.where(inds == c)[0][0]) for c in range(cpi * i, cpi * (i + 1))))
        out["i2t_top1"].append(int(inds[0]))
    for c in range(n_cap):
        inds = np.argsort(sims[:, c], kind="stable")[::-1]
        out["t2i"].append(int(np.where(inds == c // cpi)[0][0]))
        out["t2i_top1"].append(int(inds[0]))
    return {key: np.array(value) for key, value in out.items()}


def tied_reference(sims: np.ndarray, cpi: int) -> tuple[int, int]:
    """Queries whose best ground-truth score equals the score of a non-ground-truth item, per direction."""
    n_img, n_cap = sims.shape
    i2t = sum(bool(np.any(sims[i, np.arange(n_cap) // cpi != i] == sims[i, cpi * i:cpi * (i + 1)].max()))
              for i in range(n_img))
    t2i = sum(bool(np.any(np.delete(sims[:, c], c // cpi) == sims[c // cpi, c])) for c in range(n_cap))
    return i2t, t2i


REFERENCES = {"pessimistic": pessimistic_reference, "stable": stable_reference}


def assert_matches(sims: np.ndarray, cpi: int, ties: str, backend: str, chunk: int = 1024) -> None:
    """Ranks, top-1, tie counts and recalls of every entry point equal the per-query references."""
    expected = REFERENCES[ties](sims, cpi)
    tied = tied_reference(sims, cpi)
    kwargs = {"ties": ties, "backend": backend}
    found = {"i2t": i2t_ranks(sims, cpi, chunk, **kwargs), "t2i": t2i_ranks(sims, cpi, chunk, **kwargs)}
    summary, ranks = retrieval_metrics(sims, cpi, **kwargs)
    for k, direction in enumerate(("i2t", "t2i")):
        for result in (found[direction], ranks[direction]):
            np.testing.assert_array_equal(result.ranks, expected[direction])
            np.testing.assert_array_equal(result.top1, expected[f"{direction}_top1"])
            assert result.tied == tied[k]
            assert result.ranks.dtype == np.int64 and result.top1.dtype == np.int64
        for key, value in recall_summary(expected[direction]).items():
            assert summary[f"{direction}_{key}"] == value


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("n_img", "cpi"), [(1, 5), (7, 5), (40, 5), (33, 3), (9, 1), (450, 5)])
def test_random_sims_match_official_style_and_rank_count(n_img, cpi, backend):
    sims = np.random.default_rng(n_img).standard_normal((n_img, cpi * n_img)).astype(np.float32)
    for ties in ("pessimistic", "stable"):  # without ties both rules are the official result
        assert_matches(sims, cpi, ties, backend, chunk=64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ties", ["pessimistic", "stable"])
@pytest.mark.parametrize(("seed", "n_img", "cpi"), [(0, 12, 5), (1, 12, 5), (2, 13, 3), (3, 20, 2), (4, 1, 5)])
def test_tie_heavy_integer_sims_follow_each_rule(seed, n_img, cpi, ties, backend):
    sims = np.random.default_rng(seed).integers(0, 4, size=(n_img, cpi * n_img))
    assert_matches(sims, cpi, ties, backend, chunk=5)


@pytest.mark.parametrize("ties", ["pessimistic", "stable"])
@pytest.mark.parametrize("n_img", [7, 60, 61])
def test_numba_lanes_and_odd_bands_do_not_change_results(monkeypatch, n_img, ties):
    """1-5 lanes over 7, 60 and 61 rows: bands of one row up to 61, odd bands ending in a row counted alone,
    on tie-heavy and on continuous scores."""
    rng = np.random.default_rng(n_img)
    for sims in (rng.integers(0, 3, size=(n_img, 5 * n_img)).astype(np.float32),
                 rng.standard_normal((n_img, 5 * n_img))):
        for lanes in (1, 2, 3, 5):
            monkeypatch.setattr(metrics, "kernel_lanes", lambda n_img, lanes=lanes: min(lanes, n_img))
            assert_matches(sims, CPI, ties, "numba")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keys_order_like_the_scores_with_signed_zeros_equal(dtype):
    values = np.array([-np.inf, -3e38 if dtype == np.float32 else -1e300, -1.0, -1e-40, -0.0, 0.0, 1e-40, 1.0,
                       3e38, np.inf], dtype=dtype)
    keys = [metrics._key(bits) for bits in values.view(np.int32 if dtype == np.float32 else np.int64)]
    assert keys == sorted(keys) and len(set(keys)) == len(keys) - 1 and keys[4] == keys[5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_top1_among_signed_zeros_follows_the_tie_rule(backend):
    """-0.0 and +0.0 are equal scores: the maximum 0 of image 0 is at captions 1 (-0.0) and 3 (+0.0), the
    maximum of caption 2 at images 0 (+0.0) and 1 (-0.0)."""
    sims = np.full((2, 10), -1.0, dtype=np.float32)
    sims[0, 1], sims[0, 3], sims[0, 2], sims[1, 2] = -0.0, 0.0, 0.0, -0.0
    for ties, image_top, caption_top in (("pessimistic", 1, 0), ("stable", 3, 1)):
        assert i2t_ranks(sims, ties=ties, backend=backend).top1[0] == image_top
        assert t2i_ranks(sims, ties=ties, backend=backend).top1[2] == caption_top


@pytest.mark.parametrize("ties", ["pessimistic", "stable"])
def test_float64_scores_closer_than_float32_resolution_are_told_apart(ties):
    base = np.random.default_rng(9).standard_normal((12, 60))
    sims = base.round(1) + np.random.default_rng(10).integers(0, 3, size=base.shape) * 1e-12  # apart in float64 only
    assert_matches(sims, CPI, ties, "numba")
    assert_matches(sims, CPI, ties, "torch")


def test_pessimistic_rule_equals_the_sort_based_definition():
    sims = np.random.default_rng(6).integers(0, 3, size=(10, 50))
    slow_i2t, slow_t2i = slow_ranks(sims)
    _, ranks = retrieval_metrics(sims)
    np.testing.assert_array_equal(ranks["i2t"].ranks, slow_i2t)
    np.testing.assert_array_equal(ranks["t2i"].ranks, slow_t2i)


def test_tie_rules_on_a_hand_made_case():
    sims = np.zeros((2, 10))
    sims[0, :5] = [0.1, 0.9, 0.2, 0.3, 0.4]
    sims[0, 5], sims[0, 7] = 0.9, 1.0
    sims[1, 5:] = 1.0
    # image 0: caption 7 scores higher and caption 5 ties with its best GT (counted against; under the stable
    # rule it comes first too, having the higher index) -> rank 2
    # image 1: its GT captions tie only with each other -> rank 0, not a tied query
    for ties in ("pessimistic", "stable"):
        i2t = i2t_ranks(sims, ties=ties)
        np.testing.assert_array_equal(i2t.ranks, [2, 0])
        assert i2t.tied == 1
    # caption 7: its GT image 1 ties with image 0 -> rank 1 (pessimistic), 0 (stable: image 1 has the higher
    # index); the others win outright
    np.testing.assert_array_equal(t2i_ranks(sims).ranks[[0, 1, 5, 6, 7]], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(t2i_ranks(sims, ties="stable").ranks[[0, 1, 5, 6, 7]], [0, 0, 0, 0, 0])
    assert t2i_ranks(sims).tied == 1
    # top-1 of caption 7 (images 0 and 1 tie at 1.0): first index vs the official inds[0] (highest index)
    assert t2i_ranks(sims).top1[7] == 0 and t2i_ranks(sims, ties="stable").top1[7] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_top1_can_be_skipped(backend):
    sims = np.random.default_rng(2).integers(0, 3, size=(8, 40))
    with_top1 = retrieval_metrics(sims, backend=backend)
    metrics_only, ranks = retrieval_metrics(sims, top1=False, backend=backend)
    assert metrics_only == with_top1[0]
    for direction in ("i2t", "t2i"):
        assert ranks[direction].top1 is None
        np.testing.assert_array_equal(ranks[direction].ranks, with_top1[1][direction].ranks)
        assert ranks[direction].tied == with_top1[1][direction].tied


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.int64])
def test_tensor_dtypes_agree(dtype):
    sims = np.random.default_rng(4).integers(-3, 4, size=(15, 75))
    expected = retrieval_metrics(sims, ties="stable")
    found = retrieval_metrics(torch.from_numpy(sims).to(dtype), ties="stable")
    assert found[0] == expected[0]
    for direction in ("i2t", "t2i"):
        np.testing.assert_array_equal(found[1][direction].ranks, expected[1][direction].ranks)
        np.testing.assert_array_equal(found[1][direction].top1, expected[1][direction].top1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_scores_are_ranked_like_contiguous_ones(backend):
    wide = np.random.default_rng(7).integers(0, 4, size=(16, 160)).astype(np.float32)
    expected = retrieval_metrics(np.ascontiguousarray(wide[:, ::2]), ties="stable")
    for strided in (wide[:, ::2], torch.from_numpy(wide.T.copy()).T[:, ::2]):
        found = retrieval_metrics(strided, ties="stable", backend=backend)
        assert found[0] == expected[0]
        for direction in ("i2t", "t2i"):
            np.testing.assert_array_equal(found[1][direction].ranks, expected[1][direction].ranks)
            np.testing.assert_array_equal(found[1][direction].top1, expected[1][direction].top1)


def test_unknown_tie_rule_or_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match="pessimistic, stable"):
        retrieval_metrics(np.zeros((1, 5)), ties="optimistic")
    with pytest.raises(ValueError, match="auto, numba, torch"):
        i2t_ranks(np.zeros((1, 5)), backend="cupy")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("ties", ["pessimistic", "stable"])
def test_cuda_scores_are_ranked_on_the_gpu_like_the_cpu_kernel(ties):
    sims = torch.from_numpy(np.random.default_rng(8).integers(0, 4, size=(300, 1500))).float()
    expected = retrieval_metrics(sims, ties=ties)
    found = retrieval_metrics(sims.cuda(), ties=ties)
    assert found[0] == expected[0]
    for direction in ("i2t", "t2i"):
        for field in ("ranks", "top1"):
            np.testing.assert_array_equal(getattr(found[1][direction], field), getattr(expected[1][direction], field))
        assert found[1][direction].tied == expected[1][direction].tied
    with pytest.raises(ValueError, match="CPU"):
        retrieval_metrics(sims.cuda(), backend="numba")


@pytest.mark.parametrize("tie_gts", [False, True])
def test_identity_like_sims_are_perfect(tie_gts):
    n = 20
    noise = np.random.default_rng(0).uniform(0, 0.5, size=(n, CPI * n))
    gt = np.arange(CPI * n) // CPI == np.arange(n)[:, None]
    sims = np.where(gt, 1.0 if tie_gts else 1.0 + noise, noise)
    metrics_, ranks = retrieval_metrics(sims)
    assert not ranks["i2t"].ranks.any() and not ranks["t2i"].ranks.any()
    assert ranks["i2t"].tied == ranks["t2i"].tied == 0
    for d in ("i2t", "t2i"):
        assert metrics_[f"{d}_r1"] == metrics_[f"{d}_r5"] == metrics_[f"{d}_r10"] == 100.0
        assert metrics_[f"{d}_medr"] == metrics_[f"{d}_meanr"] == 1.0
    assert metrics_["rsum"] == 600.0
    assert np.all(ranks["i2t"].top1 // CPI == np.arange(n))
    np.testing.assert_array_equal(ranks["t2i"].top1, np.arange(CPI * n) // CPI)


def slow_summary(ranks: np.ndarray) -> dict:
    ranks = sorted(int(r) for r in ranks)
    n = len(ranks)
    median = ranks[n // 2] if n % 2 else (ranks[n // 2 - 1] + ranks[n // 2]) / 2
    out = {f"r{k}": 100.0 * sum(r < k for r in ranks) / n for k in (1, 5, 10)}
    out.update(medr=float(int(median) + 1), meanr=sum(ranks) / n + 1)
    return out


@pytest.mark.parametrize("ranks", [[0], [0, 3], [4, 0, 12, 9, 1, 1], list(range(37))])
def test_recall_summary_matches_slow_summary(ranks):
    assert recall_summary(np.array(ranks)) == pytest.approx(slow_summary(ranks), abs=0, rel=1e-12)


def test_retrieval_metrics_keys_and_rsum():
    sims = np.random.default_rng(3).standard_normal((30, 150)).astype(np.float32)
    metrics_, ranks = retrieval_metrics(torch.from_numpy(sims))
    assert list(metrics_) == [f"{d}_{k}" for d in ("i2t", "t2i") for k in ("r1", "r5", "r10", "medr", "meanr")
                              ] + ["rsum"]
    recalls = [metrics_[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)]
    assert metrics_["rsum"] == pytest.approx(sum(recalls))
    slow_i2t, slow_t2i = slow_ranks(sims)
    assert recall_summary(slow_i2t) == {k[4:]: v for k, v in metrics_.items() if k.startswith("i2t_")}
    assert recall_summary(slow_t2i) == {k[4:]: v for k, v in metrics_.items() if k.startswith("t2i_")}
    assert len(ranks["i2t"].ranks) == 30 and len(ranks["t2i"].ranks) == 150


def test_caps_per_image_other_than_five():
    sims = np.random.default_rng(5).standard_normal((6, 12))
    i2t = i2t_ranks(sims, caps_per_image=2)
    expected = [min(int((sims[i] > sims[i, c]).sum()) for c in (2 * i, 2 * i + 1)) for i in range(6)]
    np.testing.assert_array_equal(i2t.ranks, expected)
    t2i = t2i_ranks(sims, caps_per_image=2)
    np.testing.assert_array_equal(t2i.ranks, [int((sims[:, c] > sims[c // 2, c]).sum()) for c in range(12)])


@pytest.mark.parametrize("shape", [(4, 19), (4,), (0, 0), (2, 3, 10)])
def test_bad_shape_names_the_shapes(shape):
    with pytest.raises(ValueError, match="shape"):
        retrieval_metrics(np.zeros(shape))


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_values_are_counted(backend):
    sims = np.zeros((3, 15))
    sims[0, 1], sims[2, 2], sims[1, 7] = np.nan, np.inf, -np.inf
    for fn in (i2t_ranks, t2i_ranks, retrieval_metrics):
        with pytest.raises(ValueError, match="3 non-finite"):
            fn(sims, backend=backend)


def test_recall_summary_rejects_empty():
    with pytest.raises(ValueError, match="non-empty"):
        recall_summary(np.array([], dtype=int))


def test_huge_finite_scores_are_accepted():
    sims = np.full((2, 10), 3e38, dtype=np.float32)  # the sum overflows; every value is finite
    sims[0, :5] = sims[1, 5:] = 3.1e38
    assert retrieval_metrics(sims)[0]["rsum"] == 600.0
    assert retrieval_metrics(sims, backend="torch")[0]["rsum"] == 600.0


THREADS_AROUND_FIRST_RANKING = """
import numpy as np, torch
from itrlib.evaluation.metrics import retrieval_metrics
before = torch.get_num_threads()
retrieval_metrics(np.random.default_rng(0).standard_normal((4, 20)), backend="numba")
print(before, torch.get_num_threads())
"""


def test_the_first_numba_ranking_leaves_torchs_thread_count_alone():
    """Numba's OpenMP pool, started by the first ranking of a process, would set the OpenMP thread count it shares
    with torch to numba's (here 2 against torch's 1; by default every logical CPU against torch's physical
    cores): later training steps would reduce with other threads than a fresh process (a resumed run) does."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", THREADS_AROUND_FIRST_RANKING], capture_output=True, text=True,
                          env=env, check=True)
    assert done.stdout.split() == ["1", "1"], done.stdout


def test_chunk_must_be_positive():
    with pytest.raises(ValueError, match="chunk"):
        i2t_ranks(np.zeros((1, 5)), chunk=0)
    with pytest.raises(ValueError, match="chunk"):
        t2i_ranks(np.zeros((1, 5)), chunk=-1)
