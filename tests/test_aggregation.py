"""AFA aggregation against a slow per-sample reference written from the paper's six steps."""

import pytest
import torch

from itrlib.nn.afa_aggregation import aggregate_tokens, fixed_order, masked_max, masked_mean, merge_count, random_order


def reference_aggregate(x: torch.Tensor, n: int, k: int, perm: list[int]) -> torch.Tensor:
    """One sample, plain Python: shuffle, split in halves, best dst per src, top-k pairs, merge, concat."""
    tokens = [x[p] for p in perm[:n]]                                   # 1. shuffle
    src, dst = tokens[: n // 2], tokens[n // 2:]                         # 2. split evenly
    best = []
    for a in src:                                                        # 3. best dst match per src
        sims = [torch.nn.functional.cosine_similarity(a, b, dim=0).item() for b in dst]
        j = max(range(len(dst)), key=lambda i: (sims[i], -i))           # first index on ties
        best.append((sims[j], j))
    k_eff = min(k, n // 2)
    ranked = sorted(range(len(src)), key=lambda i: -best[i][0])         # 4. top-k pairs (stable)
    chosen = set(ranked[:k_eff])
    merged_into = {j: [dst[j]] for j in range(len(dst))}
    for i in chosen:                                                     # 5. merge by mean
        merged_into[best[i][1]].append(src[i])
    new_dst = [torch.stack(group).mean(0) for group in merged_into.values()]
    kept_src = [src[i] for i in range(len(src)) if i not in chosen]
    return torch.stack(kept_src + new_dst)                               # 6. concatenate


@pytest.mark.parametrize("k", [0, 1, 3, 50])
def test_batched_aggregation_matches_the_six_steps(k):
    torch.manual_seed(k)
    lengths = torch.tensor([7, 36, 2, 1, 12, 13])
    x = torch.randn(6, 36, 10)
    x[:, :, :2] = x[:, :, :2].round()  # some near-duplicate directions
    order = random_order(lengths, 36, torch.Generator().manual_seed(3))
    out, new_lengths = aggregate_tokens(x, lengths, merge_count(lengths, k=k), order)
    for b, n in enumerate(lengths.tolist()):
        expected = reference_aggregate(x[b], n, k, order[b].tolist())
        assert new_lengths[b] == n - min(k, n // 2) == len(expected)
        torch.testing.assert_close(out[b, : len(expected)], expected, atol=1e-6, rtol=1e-5)
        assert out[b, len(expected):].abs().sum() == 0


def test_padding_is_never_matched_merged_or_kept():
    torch.manual_seed(0)
    lengths = torch.tensor([5, 9])
    x = torch.randn(2, 9, 4)
    poisoned = x.clone()
    poisoned[0, 5:] = 1e4
    order = random_order(lengths, 9, torch.Generator().manual_seed(1))
    k_eff = merge_count(lengths, k=2)
    a, la = aggregate_tokens(x, lengths, k_eff, order)
    b, lb = aggregate_tokens(poisoned, lengths, k_eff, order)
    torch.testing.assert_close(a, b)
    assert la.tolist() == lb.tolist() == [3, 7]


def test_small_cases_and_max_bound():
    x = torch.tensor([[[1.0, 2.0], [3.0, 0.0]]])
    out, n = aggregate_tokens(x, torch.tensor([2]), torch.tensor([1]), torch.tensor([[1, 0]]))
    torch.testing.assert_close(out[0, :1], torch.tensor([[2.0, 1.0]]))  # n=2, k=1: the mean of both
    assert n.tolist() == [1]
    torch.manual_seed(1)
    x, lengths = torch.randn(4, 20, 8), torch.tensor([20, 11, 3, 16])
    merged, new = aggregate_tokens(x, lengths, merge_count(lengths, ratio=0.25), random_order(lengths, 20))
    assert (masked_max(merged, new) <= masked_max(x, lengths) + 1e-6).all()  # averaging never raises a max


def test_k_zero_is_plain_max_pooling_and_gradients_flow():
    x = torch.randn(3, 10, 5, requires_grad=True)
    lengths = torch.tensor([10, 4, 7])
    out, new = aggregate_tokens(x, lengths, merge_count(lengths, k=0), random_order(lengths, 10))
    torch.testing.assert_close(masked_max(out, new), masked_max(x, lengths))
    merged, new = aggregate_tokens(x, lengths, merge_count(lengths, k=3), random_order(lengths, 10))
    masked_max(merged, new).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_merge_count_and_fixed_order():
    lengths = torch.tensor([36, 15, 1])
    assert merge_count(lengths, ratio=0.25).tolist() == [9, 3, 0]
    assert merge_count(lengths, k=10).tolist() == [10, 7, 0]
    with pytest.raises(ValueError):
        merge_count(lengths)
    a = fixed_order(torch.tensor([5, 5, 3]), 6, seed=0)
    assert torch.equal(a[0], a[1]) and torch.equal(a, fixed_order(torch.tensor([5, 5, 3]), 6, seed=0))
    assert sorted(a[2, :3].tolist()) == [0, 1, 2] and a[2, 3:].tolist() == [3, 4, 5]


def test_masked_pools_ignore_padding():
    x = torch.tensor([[[1.0], [5.0], [100.0]]])
    assert masked_max(x, torch.tensor([2])).item() == 5.0
    assert masked_mean(x, torch.tensor([2])).item() == 3.0
