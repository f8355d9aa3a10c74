"""AFA's harder negatives (eq. 5-7): mix the two modalities of each pair and rank against the mixtures.

For pair i: ``v^g_i = l1_i * v_i + (1 - l1_i) * t_i`` and ``t^g_i = l2_i * t_i + (1 - l2_i) * v_i`` with
``l1, l2 ~ Beta(t, t)`` drawn independently per sample (a choice the paper leaves open,
docs/PAPER_DIFFERENCES.md section 2). With ``G_ij = cos(v^g_i, t^g_j)``
the extra terms are the hinge triplet loss on G with margin alpha2. Their positive is, as eq. 7 prints it,
the REAL pair ``S_ii`` (``positive="real"``), or the mixed pair ``G_ii`` (``positive="mixed"``: VSE++
max-violation applied to G alone). With ``"real"`` the hinge cannot close while intra-modal similarities
exceed ``S_ii - alpha2`` (BUTD-like features: image-image cosine ~0.9), so every step adds a second pull on
``S_ii`` that no push on S balances; see docs/AFA_NOTES.md for the measured effect.
"""

from __future__ import annotations

import torch

from itrlib.losses.triplet import triplet_loss
from itrlib.nn.functional import l2norm


def mix_modalities(img: torch.Tensor, cap: torch.Tensor, lam_img: torch.Tensor, lam_cap: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, E) pairs and (B,) weights -> mixed (v^g, t^g), each (B, E), L2-normalised (cosine in eq. 7)."""
    mixed_img = lam_img.unsqueeze(1) * img + (1 - lam_img.unsqueeze(1)) * cap
    mixed_cap = lam_cap.unsqueeze(1) * cap + (1 - lam_cap.unsqueeze(1)) * img
    return l2norm(mixed_img), l2norm(mixed_cap)


def sample_mixing_weights(batch: int, t: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent ``l1, l2 ~ Beta(t, t)`` of shape (B,), from the global torch RNG (saved in checkpoints)."""
    beta = torch.distributions.Beta(torch.tensor(float(t)), torch.tensor(float(t)))
    return beta.sample((batch,)).to(device), beta.sample((batch,)).to(device)


MIXED_POSITIVES = ("real", "mixed")


def harder_negative_loss(img: torch.Tensor, cap: torch.Tensor, lam_img: torch.Tensor, lam_cap: torch.Tensor,
                         margin: float, hardest: bool, positive: str = "real") -> torch.Tensor:
    """Terms 3-4 of eq. 7: triplet loss on G = cos(v^g, t^g) (B, B).

    ``positive="real"``: positives diag(S), S = img @ cap.T (eq. 7 as printed); ``"mixed"``: diag(G).
    """
    if positive not in MIXED_POSITIVES:
        raise ValueError(f"positive must be one of {MIXED_POSITIVES}, got {positive!r}")
    mixed_img, mixed_cap = mix_modalities(img, cap, lam_img, lam_cap)
    positives = (img * cap).sum(dim=1) if positive == "real" else None
    return triplet_loss(mixed_img @ mixed_cap.T, margin, hardest=hardest, positives=positives)
