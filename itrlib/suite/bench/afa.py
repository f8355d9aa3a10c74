"""``afa``: the cost of AFA's aggregation + MAX_dim selection against the MLP it follows (batch 128 x 36
regions x 1024-d, captions of 12-40 tokens), forward and forward+backward."""

from __future__ import annotations

import pandas as pd
import torch

from itrlib.nn.afa_aggregation import aggregate_tokens, masked_max, merge_count, random_order
from itrlib.nn.mlp import ResidualProjection
from itrlib.suite.bench.timing import time_call


def afa_enhancement(device: torch.device, batch: int = 128, dim: int = 1024, repeats: int = 20) -> pd.DataFrame:
    """Rows per modality: MLP time vs aggregation + selection time (ms), forward and forward+backward."""
    torch.manual_seed(0)
    rows = []
    cases = {"image (36 regions, 2048-d in)": (torch.full((batch,), 36), 2048),
             "text (12-40 tokens, 768-d in)": (torch.randint(12, 41, (batch,)), 768)}
    for name, (lengths, in_dim) in cases.items():
        lengths = lengths.to(device)
        mlp = ResidualProjection(in_dim, dim).to(device)
        x = torch.randn(batch, int(lengths.max()), in_dim, device=device)
        k_eff = merge_count(lengths, ratio=0.25)
        tokens = mlp(x).detach().requires_grad_()

        def aggregate_select(tokens=tokens, lengths=lengths, k_eff=k_eff):
            merged, new = aggregate_tokens(tokens, lengths, k_eff, random_order(lengths, tokens.shape[1]))
            return masked_max(merged, new)

        def mlp_fwd_bwd(mlp=mlp, x=x):
            mlp(x).sum().backward()

        def agg_fwd_bwd(fn=aggregate_select):
            fn().sum().backward()

        with torch.no_grad():
            mlp_fwd = time_call(lambda mlp=mlp, x=x: mlp(x), repeats)
            agg_fwd = time_call(aggregate_select, repeats)
        mlp_train = time_call(mlp_fwd_bwd, repeats)
        agg_train = time_call(agg_fwd_bwd, repeats)
        rows.append({"modality": name, "MLP fwd (ms)": mlp_fwd, "aggregation+MAX fwd (ms)": agg_fwd,
                     "ratio fwd": agg_fwd / mlp_fwd, "MLP fwd+bwd (ms)": mlp_train,
                     "aggregation+MAX fwd+bwd (ms)": agg_train, "ratio fwd+bwd": agg_train / mlp_train})
    return pd.DataFrame(rows)
