"""Multi-layer perceptron over token sets and the VSE∞ residual region projection."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from itrlib.nn.functional import length_mask


class TokenMLP(nn.Module):
    """Linear -> BN -> ReLU blocks, then a final Linear, applied to every token of (B, K, D_in).

    Matches VSE∞ ``lib/modules/mlp.py::MLP``: tokens are flattened to (B*K, D) before the BN, so
    the BN statistics include zero-padded positions, and the last layer has no BN or ReLU.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.norms = nn.ModuleList(nn.BatchNorm1d(d) for d in dims[1:-1])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, D_in) -> (B, K, D_out). With ``lengths`` the BN statistics use valid tokens only and
        padded positions pass through the linear layers without BN."""
        batch, tokens, _ = x.shape
        h = x.reshape(batch * tokens, -1)
        valid = None if lengths is None else length_mask(lengths, tokens).reshape(-1)
        for linear, norm in zip(self.linears[:-1], self.norms, strict=True):
            h = linear(h)
            if valid is None:
                h = norm(h)
            else:
                h = h.masked_scatter(valid.unsqueeze(-1), norm(h[valid]).to(h.dtype))
            h = torch.relu(h)
        return self.linears[-1](h).reshape(batch, tokens, -1)


class ResidualProjection(nn.Module):
    """``fc(x) + mlp(x)``: VSE∞'s precomp region encoder before pooling (``EncoderImageAggr``).

    ``fc`` is Xavier-uniform with zero bias; ``mlp`` is a 2-layer :class:`TokenMLP` with hidden size
    ``hidden_dim`` (VSE∞: embed_size // 2).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.mlp = TokenMLP(in_dim, hidden_dim or out_dim // 2, out_dim, num_layers=2)
        bound = math.sqrt(6.0) / math.sqrt(in_dim + out_dim)
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, D_in) -> (B, K, D_out); ``lengths`` restricts the BN statistics to valid tokens."""
        return self.fc(x) + self.mlp(x, lengths)
