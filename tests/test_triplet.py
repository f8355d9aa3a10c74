"""Hinge triplet loss against a brute-force loop over anchors and negatives.

The loss under test is VSE++'s, as in fartashf/vsepp and woodfrog/vse_infty.
"""

import pytest
import torch

from itrlib.losses.triplet import triplet_loss


def brute_force(scores, margin, hardest, positives=None):
    b = scores.shape[0]
    pos = [scores[i, i] if positives is None else positives[i] for i in range(b)]
    total = 0.0
    for i in range(b):  # image i as anchor: negative captions j
        costs = [max(0.0, margin + scores[i, j].item() - pos[i].item()) for j in range(b) if j != i]
        total += max(costs) if hardest else sum(costs)
    for j in range(b):  # caption j as anchor: negative images i
        costs = [max(0.0, margin + scores[i, j].item() - pos[j].item()) for i in range(b) if i != j]
        total += max(costs) if hardest else sum(costs)
    return total


@pytest.mark.parametrize("hardest", [True, False])
@pytest.mark.parametrize("b", [2, 7])
def test_triplet_loss_matches_brute_force(hardest, b):
    torch.manual_seed(b)
    scores = torch.rand(b, b) * 2 - 1
    assert triplet_loss(scores, 0.2, hardest).item() == pytest.approx(brute_force(scores, 0.2, hardest), abs=1e-5)


def test_triplet_loss_with_external_positives():
    torch.manual_seed(3)
    scores, positives = torch.rand(5, 5), torch.rand(5)
    expected = brute_force(scores, 0.1, True, positives)
    assert triplet_loss(scores, 0.1, True, positives).item() == pytest.approx(expected, abs=1e-5)


def test_perfect_separation_gives_zero_and_gradients_flow():
    scores = torch.eye(4, requires_grad=True)
    assert triplet_loss(scores, 0.2).item() == 0.0
    noisy = (torch.eye(4) * 0.1 + 0.05).requires_grad_()
    triplet_loss(noisy, 0.2).backward()
    assert noisy.grad is not None and noisy.grad.abs().sum() > 0


def test_triplet_loss_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        triplet_loss(torch.rand(3, 4))
