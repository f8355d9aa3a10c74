"""GPO against a per-sample reference written from USER eq. 10-14 and the GPO module of woodfrog/vse_infty."""

import math

import pytest
import torch

from itrlib.nn.gpo import GPO, positional_encoding


def reference_gpo(gpo: GPO, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """One sample at a time, no packing or masking: the equations read literally."""
    out = []
    for x, n in zip(features, lengths.tolist(), strict=True):
        pe = torch.tensor([[math.sin(t / 10000 ** (2 * (j // 2) / gpo.d_pe)) if j % 2 == 0
                            else math.cos(t / 10000 ** (2 * (j // 2) / gpo.d_pe)) for j in range(gpo.d_pe)]
                           for t in range(n)], dtype=torch.float32)
        h, _ = gpo.gru(pe.unsqueeze(0))
        half = h.shape[-1] // 2
        score = gpo.linear((h[..., :half] + h[..., half:]) / 2)[0, :, 0]
        w = torch.softmax(score / 0.1, dim=0)
        ordered = x[:n].sort(dim=0, descending=True).values
        out.append((w.unsqueeze(1) * ordered).sum(0))
    return torch.stack(out)


def test_positional_encoding_formula():
    pe = positional_encoding(7, 8)
    assert pe.shape == (7, 8)
    assert pe[3, 2] == pytest.approx(math.sin(3 / 10000 ** (2 / 8)), abs=1e-6)
    assert pe[3, 3] == pytest.approx(math.cos(3 / 10000 ** (2 / 8)), abs=1e-6)


def test_gpo_matches_per_sample_reference_with_variable_lengths():
    torch.manual_seed(0)
    gpo = GPO(32, 32)
    lengths = torch.tensor([5, 36, 1, 17, 5, 36])
    feats = torch.randn(6, 36, 12)
    torch.testing.assert_close(gpo(feats, lengths), reference_gpo(gpo, feats, lengths), atol=1e-5, rtol=1e-5)


def test_gpo_ignores_padded_positions():
    torch.manual_seed(1)
    gpo = GPO(32, 32)
    lengths = torch.tensor([3, 6, 4])
    feats = torch.randn(3, 8, 5)
    poisoned = feats.clone()
    for i, n in enumerate(lengths.tolist()):
        poisoned[i, n:] = 1e6
    torch.testing.assert_close(gpo(feats, lengths), gpo(poisoned, lengths))


def test_gpo_is_permutation_invariant_and_weights_sum_to_one():
    torch.manual_seed(2)
    gpo = GPO()
    feats = torch.randn(2, 10, 4)
    lengths = torch.tensor([10, 10])
    perm = torch.randperm(10)
    torch.testing.assert_close(gpo(feats, lengths), gpo(feats[:, perm], lengths))
    weights = gpo.pool_weights(torch.tensor([4, 10]))
    torch.testing.assert_close(weights.sum(1).squeeze(-1), torch.ones(2))
    assert weights[0, 4:].abs().max() < 1e-6


def test_gpo_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="GPO expects"):
        GPO()(torch.randn(3, 4), torch.tensor([4, 4, 4]))
