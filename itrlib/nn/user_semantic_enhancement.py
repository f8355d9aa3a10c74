"""USER's semantic enhancement of region features: SGE (self-guided, eq. 1-7) and CGE (CLIP-guided, eq. 8 then 6-7).

Both build one global vector per image and add it to every valid region with a weight from a masked
attention over the regions: ``x_i = v_i + a_i * v_glo`` (:func:`global_enhance`). Defaults follow the
released code (zhangy0822/USER), which produced the paper's numbers; the paper's printed variants are
constructor options:

- ``attention_norm="l2"`` (official): the softmax weights are then L2-normalised over the regions;
  ``"softmax"`` keeps the unit-sum weights of eq. 6.
- ``local_norm="slot"`` (official): SGE's local branch uses BatchNorm1d over the region-slot axis (each of
  the ``num_slots`` slots is a channel, statistics over batch x D); ``"feature"`` uses BatchNorm1d over
  the D features with statistics from the valid regions only.
- BatchNorm before Tanh and dropout p = 0.4 (official; the paper only names "Tanh and BatchNorm"), drawn by
  :class:`~itrlib.nn.functional.UniformDropout` (nn.Dropout's distribution, cheaper on CPU).

Padding convention: ``lengths`` (B,) counts the valid leading regions; padded regions get weight exactly 0
in every softmax, their values never reach a valid output, and their rows are returned unchanged.
With ``local_norm="slot"`` padded slots are fed as zero vectors, so in training mode they still take part
in that slot's batch statistics (as in the official code, whose 36 regions are all valid).
"""

from __future__ import annotations

import typing
from typing import Literal

import torch
from torch import nn

from itrlib.nn.functional import UniformDropout, flush_subnormals, l2norm, length_mask

AttentionNorm = Literal["l2", "softmax"]
LocalNorm = Literal["slot", "feature"]
ATTENTION_NORMS: tuple[str, ...] = typing.get_args(AttentionNorm)
LOCAL_NORMS: tuple[str, ...] = typing.get_args(LocalNorm)
"""The choices, checked once where the values enter (USER's config): the modules trust their arguments."""


def masked_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax of scores (B, K) over the True entries of valid (B, K); exactly 0 elsewhere."""
    return torch.softmax(scores.masked_fill(~valid, -torch.inf), dim=1)


def valid_regions(regions: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """regions (B, K, D), lengths (B,) -> (valid (B, K) bool, regions with padded rows zeroed, whether every
    region is valid). When every region is valid the regions themselves are returned (no copy)."""
    valid = length_mask(lengths, regions.shape[1])
    full = bool(lengths.min() >= regions.shape[1])
    return valid, regions if full else regions.masked_fill(~valid.unsqueeze(-1), 0.0), full


def global_enhance(regions: torch.Tensor, lengths: torch.Tensor, global_vec: torch.Tensor,
                   attention_norm: AttentionNorm = "l2", attention_scale: float = 1.0) -> torch.Tensor:
    """Eq. 5-6: regions (B, K, D), lengths (B,), unit global_vec (B, D) -> enhanced regions (B, K, D).

    ``a = softmax_valid(scale * v_glo^T v_i)``, L2-normalised over the regions when ``attention_norm="l2"``;
    ``x_i = v_i + a_i * v_glo``, subnormal entries set to 0 (:func:`flush_subnormals`). Padded rows are
    returned unchanged.
    """
    valid, clean, full = valid_regions(regions, lengths)
    scores = attention_scale * torch.einsum("bkd,bd->bk", clean, global_vec)
    attn = masked_softmax(scores, valid)
    if attention_norm == "l2":
        attn = l2norm(attn, dim=1)
    # v_i + a_i v_glo in one pass over (B, K, D)
    enhanced = torch.addcmul(regions, attn.unsqueeze(-1), global_vec.unsqueeze(1))
    if not full:
        enhanced = torch.where(valid.unsqueeze(-1), enhanced, regions)
    # near-zero attention weights added to exact-zero features leave subnormals that slow the next matmuls
    # (forward and backward) about 2x on CPU; flushing them moves no value by more than 1.2e-38
    return flush_subnormals(enhanced)


def _init_linear(layer: nn.Linear) -> None:
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)


class SGE(nn.Module):
    """Self-guided enhancement: region features (B, K, D) and lengths (B,) -> enhanced regions (B, K, D).

    ``r_i = TBD(nu(v_ave)) * TBD(kappa(v_i))`` (Linear -> BatchNorm -> Tanh -> Dropout), ``s = softmax_valid(w^T r_i
    + b)``, ``v_glo = l2norm(sum_i s_i v_i)`` on the raw regions, then :func:`global_enhance`.
    """

    def __init__(self, region_dim: int, num_slots: int = 36, local_norm: LocalNorm = "slot", dropout: float = 0.4,
                 attention_norm: AttentionNorm = "l2", attention_scale: float = 1.0):
        super().__init__()
        self.num_slots = num_slots
        self.local_norm = local_norm
        self.attention_norm: AttentionNorm = attention_norm
        self.attention_scale = attention_scale
        self.local_fc = nn.Linear(region_dim, region_dim)
        self.local_bn = nn.BatchNorm1d(num_slots if local_norm == "slot" else region_dim)
        self.global_fc = nn.Linear(region_dim, region_dim)
        self.global_bn = nn.BatchNorm1d(region_dim)
        self.dropout = UniformDropout(dropout)
        self.score = nn.Linear(region_dim, 1)
        for layer in (self.local_fc, self.global_fc, self.score):
            _init_linear(layer)

    def _local_branch(self, clean: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Zero-padded regions (B, K, D) -> Tanh(BN(kappa(v_i))) (B, K, D), before dropout."""
        hidden = self.local_fc(clean)
        if self.local_norm == "slot":
            if hidden.shape[1] != self.num_slots:
                raise ValueError(f"local_norm='slot' needs exactly num_slots={self.num_slots} regions per image, "
                                 f"got {hidden.shape[1]}; pad to num_slots or use local_norm='feature'")
            normed = self.local_bn(hidden)
        else:
            normed = torch.zeros_like(hidden).index_put((valid,), self.local_bn(hidden[valid]))
        return torch.tanh(normed)

    def global_vector(self, regions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Eq. 1-4: regions (B, K, D), lengths (B,) -> unit global vector v_glo (B, D)."""
        valid, clean, _ = valid_regions(regions, lengths)
        v_ave = clean.sum(dim=1) / lengths.to(clean.dtype).unsqueeze(1)
        glob = self.dropout(torch.tanh(self.global_bn(self.global_fc(v_ave))))
        local = self.dropout(self._local_branch(clean, valid))
        weights = masked_softmax(self.score(glob.unsqueeze(1) * local).squeeze(-1), valid)
        return l2norm(torch.einsum("bk,bkd->bd", weights, clean))

    def forward(self, regions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """regions (B, K, D), lengths (B,) with 1 <= lengths <= K -> enhanced regions (B, K, D)."""
        return global_enhance(regions, lengths, self.global_vector(regions, lengths), self.attention_norm,
                              self.attention_scale)


class CGE(nn.Module):
    """CLIP-guided enhancement: regions (B, K, D), lengths (B,), CLIP image embedding (B, clip_dim) -> (B, K, D).

    Eq. 8: ``v_glo = W2 BN(GELU(W1 BN(c) + b1)) + b2``, L2-normalised (our choice; CGE is not in the official
    release), then the same :func:`global_enhance` as SGE.
    """

    def __init__(self, region_dim: int, clip_dim: int = 512, hidden: int = 2048, attention_norm: AttentionNorm = "l2",
                 attention_scale: float = 1.0):
        super().__init__()
        self.attention_norm: AttentionNorm = attention_norm
        self.attention_scale = attention_scale
        self.clip_bn = nn.BatchNorm1d(clip_dim)
        self.fc1 = nn.Linear(clip_dim, hidden)
        self.hidden_bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, region_dim)
        for layer in (self.fc1, self.fc2):
            _init_linear(layer)

    def global_vector(self, clip: torch.Tensor) -> torch.Tensor:
        """Eq. 8: CLIP embedding (B, clip_dim) -> unit global vector (B, D)."""
        return l2norm(self.fc2(self.hidden_bn(nn.functional.gelu(self.fc1(self.clip_bn(clip))))))

    def forward(self, regions: torch.Tensor, lengths: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
        """regions (B, K, D), lengths (B,) with 1 <= lengths <= K, clip (B, clip_dim) -> enhanced regions (B, K, D)."""
        return global_enhance(regions, lengths, self.global_vector(clip), self.attention_norm, self.attention_scale)
