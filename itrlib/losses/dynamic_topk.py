"""Hinge ranking loss with dynamic top-K negatives (MVSEN eq. 12), also used by its text-text matching.

For a (B, B) score matrix with the positives on the diagonal (rows: one side, e.g. images; columns: the
other) and margin lambda:

    c_row[i, j] = [lambda + S_ij - S_ii]_+,   c_col[i, j] = [lambda + S_ij - S_jj]_+,   diagonals := 0
                                              (the costs of :func:`itrlib.losses.triplet.triplet_costs`)
    K = int(#{c_row > 0} / (B + 1e-5) + 1)   (one K for both sides, recomputed per batch, not differentiated;
                                              = floor(C / B) + 1, except C / B when C is a multiple of B)
    L = sum_i (K largest of c_row[i, :]) + sum_j (K largest of c_col[:, j])

Behaviour matched: FlyCuteBird/MVSEN ``model.ContrastiveLoss`` (``DynamicTopK_Negative``; K computed as
``int(count / (B + 1e-5) + 1)`` in float32, like the release), a sum over the batch. ``hardest`` (VSE++
max) and ``all`` (sum over every negative) are the release's other two options.
"""

from __future__ import annotations

import torch

from itrlib.losses.triplet import triplet_costs, triplet_loss

NEGATIVES = ("topk", "hardest", "all")


def dynamic_topk_hinge(scores: torch.Tensor, margin: float, negatives: str = "topk") -> torch.Tensor:
    """scores (B, B), positives on the diagonal -> scalar loss (summed over the batch)."""
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if negatives != "topk":  # the release's other two options are VSE++'s max and VSE0's sum
        return triplet_loss(scores.float(), margin, hardest=negatives == "hardest")
    cost_row, cost_col = triplet_costs(scores.float(), margin)
    k = dynamic_k(cost_row)
    return cost_row.topk(k, dim=1).values.sum() + cost_col.topk(k, dim=0).values.sum()


def dynamic_k(cost_row: torch.Tensor) -> int:
    """K = int(violations / (B + 1e-5) + 1) from the row costs (B, B), as the release computes it (1..B)."""
    b = cost_row.shape[0]
    count = (cost_row > 0).sum().float()
    return min(b, int(count / (b + 1e-5) + 1))
