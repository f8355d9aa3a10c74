"""MVSEN's intra-modality interaction (eq. 3-4): a transformer encoder layer whose attention also reads
learnable memory slots (the Meshed-Memory Transformer's memory-augmented encoder, as the released code).

Per set X (B, n, d_in) of regions or words:

    X0 = LayerNorm(Dropout(ReLU(W_in X)))
    keys   = [W_k X0 ; sqrt(d_head) * M_k],  values = [W_v X0 ; sqrt(slots) * M_v]     (M: slots x H*d_head)
    X1 = LayerNorm(X0 + Dropout(W_o MultiHead(W_q X0, keys, values)))
    X2 = LayerNorm(X1 + Dropout(W_2 Dropout(ReLU(W_1 X1))))

The memory scales and initialisations (M_k ~ N(0, 1/d_head), M_v ~ N(0, 1/slots), Xavier projections with
zero biases) are the released code's (FlyCuteBird/MVSEN ``attention.py``/``encoders.py``; behaviour
matched, code written anew). Padding: ``key_padding="lengths"`` (default) keeps padded items out of every
attention; ``"official"`` reproduces the release, whose mask is ``sum(X0) == 0`` taken after the LayerNorm
and so almost never masks anything (a caption's features then depend on its batch's padded length).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from itrlib.nn.functional import length_mask

KEY_PADDING = ("lengths", "official")


class MemoryAttention(nn.Module):
    """Multi-head attention over the set itself plus ``slots`` learnable memory keys/values."""

    def __init__(self, d_model: int, heads: int, d_head: int, slots: int):
        super().__init__()
        inner = heads * d_head
        self.heads, self.d_head, self.slots = heads, d_head, slots
        self.query, self.key, self.value = (nn.Linear(d_model, inner) for _ in range(3))
        self.out = nn.Linear(inner, d_model)
        for layer in (self.query, self.key, self.value, self.out):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.memory_keys = self.memory_values = None  # slots = 0: plain multi-head self-attention
        if slots:
            self.memory_keys = nn.Parameter(torch.randn(1, slots, inner) / d_head)
            self.memory_values = nn.Parameter(torch.randn(1, slots, inner) / slots)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """x (B, n, d_model), valid (B, n) bool (None: every item attends) -> (B, n, d_model)."""
        b, n, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, t.shape[1], self.heads, self.d_head).transpose(1, 2)

        keys, values = self.key(x), self.value(x)
        if self.slots:
            keys = torch.cat([keys, math.sqrt(self.d_head) * self.memory_keys.expand(b, -1, -1)], dim=1)
            values = torch.cat([values, math.sqrt(self.slots) * self.memory_values.expand(b, -1, -1)], dim=1)
        q, k, v = heads(self.query(x)), heads(keys), heads(values)
        mask = None
        if valid is not None:  # the memory slots are always attended
            mask = torch.cat([valid, valid.new_ones(b, self.slots)], dim=1)[:, None, None, :]
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(att.transpose(1, 2).reshape(b, n, self.heads * self.d_head))


class MemoryEncoderLayer(nn.Module):
    """Memory attention + residual + LayerNorm, then the position-wise FFN + residual + LayerNorm."""

    def __init__(self, d_model: int, heads: int, d_head: int, d_ff: int, slots: int, dropout: float):
        super().__init__()
        self.attention = MemoryAttention(d_model, heads, d_head, slots)
        self.attention_norm = nn.LayerNorm(d_model)
        self.ff_in = nn.Linear(d_model, d_ff)
        self.ff_out = nn.Linear(d_ff, d_model)
        self.ff_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.ff_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, valid)))
        ff = self.ff_out(self.ff_dropout(F.relu(self.ff_in(x))))
        return self.ff_norm(x + self.dropout(ff))


class MemoryAugmentedEncoder(nn.Module):
    """(B, n, d_in) sets with lengths (B,) -> (B, n, d_model); one instance may encode both modalities."""

    def __init__(self, d_in: int, d_model: int, heads: int = 8, d_head: int = 64, d_ff: int = 2048,
                 slots: int = 100, layers: int = 1, dropout: float = 0.1, key_padding: str = "lengths"):
        super().__init__()
        if key_padding not in KEY_PADDING:
            raise ValueError(f"key_padding must be one of {KEY_PADDING}, got {key_padding!r}")
        self.key_padding = key_padding
        self.input = nn.Linear(d_in, d_model)
        self.input_dropout = nn.Dropout(dropout)
        self.input_norm = nn.LayerNorm(d_model)
        self.layers = nn.ModuleList(MemoryEncoderLayer(d_model, heads, d_head, d_ff, slots, dropout)
                                    for _ in range(layers))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, n, d_in), lengths (B,) -> (B, n, d_model); padded positions hold unused values."""
        x = self.input_norm(self.input_dropout(F.relu(self.input(x))))
        if self.key_padding == "official":
            valid = x.sum(-1) != 0  # the release's test, after the LayerNorm: practically all True
        else:
            valid = length_mask(lengths, x.shape[1])
        for layer in self.layers:
            x = layer(x, valid)
        return x
