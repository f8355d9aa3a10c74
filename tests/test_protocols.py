"""Protocols (fold averaging, global top1 indices) and the block-sharded scorer."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from itrlib.errors import ConfigError, DataError
from itrlib.evaluation.metrics import retrieval_metrics
from itrlib.evaluation.protocols import PROTOCOLS, Protocol, fold_bounds, get_protocol
from itrlib.evaluation.ranking import evaluate_blocks
from itrlib.evaluation.scoring import sharded_scores
from itrlib.nn.functional import inner_products_fp32 as global_score


def embedded_sims(n_img: int, seed: int = 0, dim: int = 8) -> torch.Tensor:
    """(n_img, 5 n_img) cosine scores with some signal, so that recalls differ between folds."""
    gen = torch.Generator().manual_seed(seed)
    img = torch.randn(n_img, dim, generator=gen)
    cap = img.repeat_interleave(5, 0) + 1.5 * torch.randn(5 * n_img, dim, generator=gen)
    return torch.nn.functional.normalize(img, dim=1) @ torch.nn.functional.normalize(cap, dim=1).T


def test_protocol_table_and_lookup():
    assert get_protocol("coco1k") == Protocol("coco1k", "testall", 5, PROTOCOLS["coco1k"].description,
                                              "coco", "5fold1k", 1000)
    assert (get_protocol("f30k1k").split, get_protocol("f30k1k").folds) == ("test", 1)
    assert (get_protocol("coco5k").split, get_protocol("coco5k").folds) == ("testall", 1)
    with pytest.raises(ConfigError, match="coco1k, coco5k, f30k1k"):
        get_protocol("coco")


def test_fold_bounds():
    assert fold_bounds(5000, 5) == [(0, 1000), (1000, 2000), (2000, 3000), (3000, 4000), (4000, 5000)]
    assert fold_bounds(7, 1) == [(0, 7)]
    with pytest.raises(DataError, match="1001 images"):
        fold_bounds(1001, 5)
    with pytest.raises(DataError):
        fold_bounds(3, 5)
    with pytest.raises(ConfigError):
        fold_bounds(10, 0)


def test_five_fold_average_equals_mean_of_direct_fold_metrics():
    n = 100
    sims = embedded_sims(n)
    calls = []

    def similarity(img: slice, cap: slice) -> torch.Tensor:
        calls.append((img.start, img.stop, cap.start, cap.stop))
        return sims[img, cap]

    result = evaluate_blocks(similarity, n, PROTOCOLS["coco1k"])
    assert calls == [(20 * f, 20 * f + 20, 100 * f, 100 * f + 100) for f in range(5)]
    direct = [retrieval_metrics(sims[20 * f:20 * f + 20, 100 * f:100 * f + 100])[0] for f in range(5)]
    assert result["folds"] == direct
    assert len({d["rsum"] for d in direct}) > 1
    for key in direct[0]:
        assert result["metrics"][key] == pytest.approx(np.mean([d[key] for d in direct]), rel=1e-12)
    assert result["metrics"]["rsum"] == pytest.approx(
        sum(result["metrics"][f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)), rel=1e-12)
    assert (result["protocol"], result["split"], result["n_images"], result["n_captions"]) == (
        "coco1k", "testall", n, 5 * n)
    json.dumps(result)


def test_five_fold_ranks_and_global_top1():
    n = 50
    sims = embedded_sims(n, seed=1)
    result = evaluate_blocks(lambda i, c: sims[i, c], n, PROTOCOLS["coco1k"])
    ranks = result["ranks"]
    assert len(ranks["i2t"]) == len(ranks["i2t_top1"]) == n
    assert len(ranks["t2i"]) == len(ranks["t2i_top1"]) == 5 * n
    for f in range(5):
        img, cap = slice(10 * f, 10 * f + 10), slice(50 * f, 50 * f + 50)
        block = sims[img, cap]
        assert ranks["i2t_top1"][img] == (block.argmax(1) + cap.start).tolist()
        assert ranks["t2i_top1"][cap] == (block.argmax(0) + img.start).tolist()
        fold = retrieval_metrics(block)[1]
        assert ranks["i2t"][img] == fold["i2t"].ranks.tolist()
        assert ranks["t2i"][cap] == fold["t2i"].ranks.tolist()
    # a global top1 always lies inside the query's own fold
    assert all(t // 50 == i // 10 for i, t in enumerate(ranks["i2t_top1"]))
    assert all(t // 10 == c // 50 for c, t in enumerate(ranks["t2i_top1"]))


def test_single_fold_is_one_evaluation_of_the_whole_split():
    n = 30
    sims = embedded_sims(n, seed=2)
    calls = []
    result = evaluate_blocks(lambda i, c: calls.append((i, c)) or sims[i, c], n, PROTOCOLS["f30k1k"])
    assert calls == [(slice(0, n), slice(0, 5 * n))]
    assert "folds" not in result
    metrics, ranks = retrieval_metrics(sims)
    assert result["metrics"] == metrics
    assert result["ranks"]["i2t_top1"] == ranks["i2t"].top1.tolist()
    assert result["ranks"]["t2i"] == ranks["t2i"].ranks.tolist()


def test_bad_block_names_the_fold():
    with pytest.raises(ValueError, match=r"images \[0, 10\) x captions \[0, 50\)"):
        evaluate_blocks(lambda i, c: torch.zeros(10, 49), 50, PROTOCOLS["coco1k"])


@pytest.mark.parametrize(("img_shard", "cap_shard"), [(7, 13), (1, 1000), (1000, 3), (23, 23)])
def test_sharded_scores_equal_full_matmul(img_shard, cap_shard):
    gen = torch.Generator().manual_seed(0)
    img, cap = torch.randn(23, 16, generator=gen), torch.randn(115, 16, generator=gen)
    calls = []

    def score(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(torch.is_grad_enabled())
        return global_score(a, b)

    out = sharded_scores(score, img, cap, img_shard=img_shard, cap_shard=cap_shard, device="cpu")
    assert out.dtype == torch.float32 and out.shape == (23, 115)
    torch.testing.assert_close(out, img @ cap.T)
    assert len(calls) == -(-23 // img_shard) * -(-115 // cap_shard) and not any(calls)


@dataclass
class Padded:
    """A minimal padded-sequence container: sliceable along dim 0, movable with ``.to``."""

    feats: torch.Tensor  # (n, L, d)
    lengths: torch.Tensor  # (n,)

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, index: slice) -> "Padded":
        return Padded(self.feats[index], self.lengths[index])

    def to(self, device) -> "Padded":
        return Padded(self.feats.to(device), self.lengths.to(device))


def test_sharded_scores_accepts_sequence_containers():
    gen = torch.Generator().manual_seed(1)
    img = torch.randn(9, 8, generator=gen)
    cap = Padded(torch.randn(12, 4, 8, generator=gen), torch.randint(1, 5, (12,), generator=gen))

    def score(a: torch.Tensor, b: Padded) -> torch.Tensor:
        mean = torch.stack([f[:n].mean(0) for f, n in zip(b.feats, b.lengths, strict=True)])
        return a @ mean.T

    out = sharded_scores(score, img, cap, img_shard=4, cap_shard=5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, score(img, cap))


def test_sharded_scores_rejects_bad_blocks():
    img, cap = torch.randn(6, 4), torch.randn(10, 4)

    def nan_in_second_block(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = a @ b.T
        if len(b) < 5:
            out[0, 0] = float("nan")
        return out

    with pytest.raises(ValueError, match=r"1 non-finite .*images \[0, 3\) x captions \[6, 10\)"):
        sharded_scores(nan_in_second_block, img, cap, img_shard=3, cap_shard=6)
    with pytest.raises(ValueError, match=r"shape \(6, 9\)"):
        sharded_scores(lambda a, b: (a @ b.T)[:, 1:], img, cap)


def test_sharded_scores_counts_every_kind_of_non_finite_score_and_accepts_a_finite_block_whose_sum_overflows():
    img, cap = torch.randn(2, 4), torch.randn(3, 4)
    for bad in ([float("inf"), float("-inf")], [float("inf"), 1.0], [float("nan"), 1.0]):
        def score(a, b, bad=bad):
            out = a @ b.T
            out[0, :2] = torch.tensor(bad)
            return out

        count = sum(not np.isfinite(v) for v in bad)
        with pytest.raises(ValueError, match=rf"{count} non-finite"):
            sharded_scores(score, img, cap)
    huge = torch.full((2, 3), 3e38)  # finite scores whose float32 sum is inf
    assert torch.equal(sharded_scores(lambda a, b: huge, img, cap), huge)


def test_global_score_is_float32_under_autocast():
    a, b = torch.randn(3, 8).bfloat16(), torch.randn(4, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = global_score(a, b)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, a.float() @ b.float().T)
