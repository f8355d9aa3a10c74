"""GPO, the Generalized Pooling Operator of VSE∞ (USER eq. 10-14).

A sequence model reads only sinusoidal position codes (not the features), so the pooling weights are a
learned function of the set size. Each feature dimension is sorted in descending order over the valid
positions and the k-th weight multiplies the k-th largest value.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from itrlib.nn.functional import length_mask

MASK_VALUE = -10000.0
TEMPERATURE = 0.1


def positional_encoding(length: int, dim: int) -> torch.Tensor:
    """Sinusoidal codes (length, dim): ``pe[t, 2j] = sin(t / 10000^(2j/dim))``, ``pe[t, 2j+1] = cos(.)``."""
    if dim % 2:
        raise ValueError(f"positional encoding needs an even dimension, got {dim}")
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * inv_freq)
    pe[:, 1::2] = torch.cos(position * inv_freq)
    return pe


class GPO(nn.Module):
    """Pool (B, K, D) features with per-sample valid lengths into (B, D).

    Matches VSE∞ ``GPO(32, 32)``: a 1-layer bidirectional GRU over the position codes with the two
    directions averaged, a bias-free linear scorer, padded scores set to -10000, softmax at temperature
    0.1, per-dimension descending sort with padded slots zeroed. The GRU runs once per distinct length in
    the batch (the weights depend on nothing else), which gives the same result as running it per sample.
    """

    def __init__(self, d_pe: int = 32, d_hidden: int = 32):
        super().__init__()
        self.d_pe = d_pe
        self.gru = nn.GRU(d_pe, d_hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(d_hidden, 1, bias=False)

    def pool_weights(self, lengths: torch.Tensor) -> torch.Tensor:
        """Weights (B, L, 1) over positions, L = max length; zero (up to softmax) at padded positions."""
        max_len = int(lengths.max())
        unique, inverse = torch.unique(lengths, return_inverse=True)
        pe = positional_encoding(max_len, self.d_pe).to(device=lengths.device, dtype=self.linear.weight.dtype)
        mask = length_mask(unique, max_len)
        codes = pe.unsqueeze(0).expand(len(unique), -1, -1) * mask.unsqueeze(-1)
        packed = pack_padded_sequence(codes, unique.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=max_len)
        half = out.shape[-1] // 2
        scores = self.linear((out[..., :half] + out[..., half:]) / 2)
        scores = scores.masked_fill(~mask.unsqueeze(-1), MASK_VALUE)
        return torch.softmax(scores / TEMPERATURE, dim=1)[inverse]

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """features (B, K, D), lengths (B,) with 1 <= lengths <= K -> pooled (B, D)."""
        if features.dim() != 3 or lengths.shape != features.shape[:1]:
            raise ValueError(f"GPO expects features (B, K, D) and lengths (B,); got {tuple(features.shape)} "
                             f"and {tuple(lengths.shape)}")
        weights = self.pool_weights(lengths)
        max_len = weights.shape[1]
        valid = length_mask(lengths, max_len).unsqueeze(-1)
        masked = features[:, :max_len].masked_fill(~valid, MASK_VALUE)
        # sorted along a contiguous last axis (B, D, L): twice as fast as along the middle one, forward and backward
        ordered = masked.transpose(1, 2).contiguous().sort(dim=2, descending=True).values.transpose(1, 2)
        ordered = ordered.masked_fill(~valid, 0.0)
        return (ordered * weights.to(ordered.dtype)).sum(dim=1)
