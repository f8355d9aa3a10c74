"""Vectorised ranks and recalls against slow, obviously correct loops."""

import numpy as np
import pytest
import torch

from itrlib.evaluation.metrics import i2t_ranks, recall_summary, retrieval_metrics, t2i_ranks

CPI = 5


def first_hit(scores: np.ndarray, is_gt: np.ndarray) -> int:
    """Sort descending, equal scores with every ground truth after the non-ground truths (pessimistic);
    return the position of the first ground truth."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], bool(is_gt[j])))
    return next(pos for pos, j in enumerate(order) if is_gt[j])


def slow_ranks(sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_img, n_cap = sims.shape
    i2t = [first_hit(sims[i], np.arange(n_cap) // CPI == i) for i in range(n_img)]
    t2i = [first_hit(sims[:, c], np.arange(n_img) == c // CPI) for c in range(n_cap)]
    return np.array(i2t), np.array(t2i)


def argsort_ranks(sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official algorithm in other words: order each query's items by decreasing score with
    ``np.argsort(...)[::-1]``; i2t takes the earliest of the image's captions, t2i the caption's image."""
    n_img, n_cap = sims.shape
    i2t, t2i = [], []
    for i in range(n_img):
        position = np.empty(n_cap, dtype=int)
        position[np.argsort(sims[i])[::-1]] = np.arange(n_cap)
        i2t.append(position[CPI * i:CPI * i + CPI].min())
    for c in range(n_cap):
        decreasing = list(np.argsort(sims[:, c])[::-1])
        t2i.append(decreasing.index(c // CPI))
    return np.array(i2t), np.array(t2i)


def slow_summary(ranks: np.ndarray) -> dict:
    ranks = sorted(int(r) for r in ranks)
    n = len(ranks)
    median = ranks[n // 2] if n % 2 else (ranks[n // 2 - 1] + ranks[n // 2]) / 2
    out = {f"r{k}": 100.0 * sum(r < k for r in ranks) / n for k in (1, 5, 10)}
    out.update(medr=float(int(median) + 1), meanr=sum(ranks) / n + 1)
    return out


@pytest.mark.parametrize("n_img", [1, 7, 40])
def test_random_sims_match_slow_reference_and_argsort(n_img):
    sims = np.random.default_rng(n_img).standard_normal((n_img, CPI * n_img))
    slow_i2t, slow_t2i = slow_ranks(sims)
    off_i2t, off_t2i = argsort_ranks(sims)
    i2t, t2i = i2t_ranks(sims, chunk=3), t2i_ranks(sims, chunk=11)
    np.testing.assert_array_equal(i2t.ranks, slow_i2t)
    np.testing.assert_array_equal(t2i.ranks, slow_t2i)
    np.testing.assert_array_equal(i2t.ranks, off_i2t)
    np.testing.assert_array_equal(t2i.ranks, off_t2i)
    np.testing.assert_array_equal(i2t.top1, sims.argmax(axis=1))
    np.testing.assert_array_equal(t2i.top1, sims.argmax(axis=0))
    assert i2t.ranks.dtype == np.int64 and t2i.top1.dtype == np.int64


@pytest.mark.parametrize("seed", range(4))
def test_many_ties_follow_the_pessimistic_rule(seed):
    sims = np.random.default_rng(seed).integers(0, 4, size=(12, CPI * 12))
    slow_i2t, slow_t2i = slow_ranks(sims)
    i2t, t2i = i2t_ranks(sims, chunk=5), t2i_ranks(torch.from_numpy(sims).float(), chunk=7)
    np.testing.assert_array_equal(i2t.ranks, slow_i2t)
    np.testing.assert_array_equal(t2i.ranks, slow_t2i)
    # first index among equal maxima
    np.testing.assert_array_equal(i2t.top1, sims.argmax(axis=1))
    np.testing.assert_array_equal(t2i.top1, sims.argmax(axis=0))


def test_tie_rule_on_a_hand_made_case():
    sims = np.zeros((2, 10))
    sims[0, :5] = [0.1, 0.9, 0.2, 0.3, 0.4]
    sims[0, 5], sims[0, 7] = 0.9, 1.0
    sims[1, 5:] = 1.0
    # image 0: caption 7 scores higher and caption 5 ties with its best GT (counted against) -> rank 2
    # image 1: its GT captions tie only with each other -> rank 0
    np.testing.assert_array_equal(i2t_ranks(sims).ranks, [2, 0])
    # caption 7: its GT image 1 ties with image 0 -> rank 1; the others win outright
    np.testing.assert_array_equal(t2i_ranks(sims).ranks[[0, 1, 5, 6, 7]], [0, 0, 0, 0, 1])


@pytest.mark.parametrize("tie_gts", [False, True])
def test_identity_like_sims_are_perfect(tie_gts):
    n = 20
    noise = np.random.default_rng(0).uniform(0, 0.5, size=(n, CPI * n))
    gt = np.arange(CPI * n) // CPI == np.arange(n)[:, None]
    sims = np.where(gt, 1.0 if tie_gts else 1.0 + noise, noise)
    metrics, ranks = retrieval_metrics(sims)
    assert not ranks["i2t"].ranks.any() and not ranks["t2i"].ranks.any()
    for d in ("i2t", "t2i"):
        assert metrics[f"{d}_r1"] == metrics[f"{d}_r5"] == metrics[f"{d}_r10"] == 100.0
        assert metrics[f"{d}_medr"] == metrics[f"{d}_meanr"] == 1.0
    assert metrics["rsum"] == 600.0
    assert np.all(ranks["i2t"].top1 // CPI == np.arange(n))
    np.testing.assert_array_equal(ranks["t2i"].top1, np.arange(CPI * n) // CPI)


@pytest.mark.parametrize("ranks", [[0], [0, 3], [4, 0, 12, 9, 1, 1], list(range(37))])
def test_recall_summary_matches_slow_summary(ranks):
    assert recall_summary(np.array(ranks)) == pytest.approx(slow_summary(ranks), abs=0, rel=1e-12)


def test_retrieval_metrics_keys_and_rsum():
    sims = np.random.default_rng(3).standard_normal((30, 150)).astype(np.float32)
    metrics, ranks = retrieval_metrics(torch.from_numpy(sims))
    assert list(metrics) == [f"{d}_{k}" for d in ("i2t", "t2i") for k in ("r1", "r5", "r10", "medr", "meanr")
                             ] + ["rsum"]
    recalls = [metrics[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)]
    assert metrics["rsum"] == pytest.approx(sum(recalls))
    slow_i2t, slow_t2i = slow_ranks(sims)
    assert recall_summary(slow_i2t) == {k[4:]: v for k, v in metrics.items() if k.startswith("i2t_")}
    assert recall_summary(slow_t2i) == {k[4:]: v for k, v in metrics.items() if k.startswith("t2i_")}
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


def test_non_finite_values_are_counted():
    sims = np.zeros((3, 15))
    sims[0, 1], sims[2, 2], sims[1, 7] = np.nan, np.inf, -np.inf
    for fn in (i2t_ranks, t2i_ranks, retrieval_metrics):
        with pytest.raises(ValueError, match="3 non-finite"):
            fn(sims)


def test_recall_summary_rejects_empty():
    with pytest.raises(ValueError, match="non-empty"):
        recall_summary(np.array([], dtype=int))


def test_huge_finite_scores_are_accepted():
    sims = np.full((2, 10), 3e38, dtype=np.float32)  # the sum overflows; every value is finite
    sims[0, :5] = sims[1, 5:] = 3.1e38
    assert retrieval_metrics(sims)[0]["rsum"] == 600.0


def test_chunk_must_be_positive():
    with pytest.raises(ValueError, match="chunk"):
        i2t_ranks(np.zeros((1, 5)), chunk=0)
    with pytest.raises(ValueError, match="chunk"):
        t2i_ranks(np.zeros((1, 5)), chunk=-1)
