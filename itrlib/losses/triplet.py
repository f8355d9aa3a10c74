"""Hinge triplet ranking losses over a batch similarity matrix (VSE++ / VSE∞, AFA eq. 7).

For a batch of B aligned pairs with scores S (B, B), S[i, j] = s(image i, caption j):

* caption retrieval cost ``c_s[i, j] = [margin + S[i, j] - P_i]_+`` (image i, negative caption j)
* image retrieval cost ``c_im[i, j] = [margin + S[i, j] - P_j]_+`` (caption j, negative image i)

where the positives P default to ``diag(S)`` (AFA's harder-negative terms score negatives on a mixed
matrix but keep the real positives). Diagonal costs are zero. ``hardest=True`` keeps the largest cost per
query (VSE++ max-violation); otherwise every negative counts (VSE0). Terms are summed over the batch, as
in the official code, not averaged.
"""

from __future__ import annotations

import torch


def triplet_costs(scores: torch.Tensor, margin: float, positives: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (c_s, c_im), each (B, B) with zero diagonals."""
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"triplet loss needs a square (B, B) score matrix, got {tuple(scores.shape)}")
    pos = scores.diagonal() if positives is None else positives
    if pos.shape != scores.shape[:1]:
        raise ValueError(f"positives must have shape ({scores.shape[0]},), got {tuple(pos.shape)}")
    eye = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    cost_s = (margin + scores - pos.unsqueeze(1)).clamp(min=0).masked_fill(eye, 0.0)
    cost_im = (margin + scores - pos.unsqueeze(0)).clamp(min=0).masked_fill(eye, 0.0)
    return cost_s, cost_im


def triplet_loss(scores: torch.Tensor, margin: float = 0.2, hardest: bool = True,
                 positives: torch.Tensor | None = None) -> torch.Tensor:
    """Scalar loss: hardest (max over negatives) or sum over negatives, both directions, summed over B."""
    cost_s, cost_im = triplet_costs(scores, margin, positives)
    if hardest:
        return cost_s.max(dim=1).values.sum() + cost_im.max(dim=0).values.sum()
    return cost_s.sum() + cost_im.sum()
