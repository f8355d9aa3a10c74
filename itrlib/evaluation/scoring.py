"""Block-sharded scoring of every image against every caption, for global and local-matching models alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm


def global_score(img_emb: torch.Tensor, cap_emb: torch.Tensor) -> torch.Tensor:
    """Inner products (n_i, d) x (n_c, d) -> (n_i, n_c), computed in float32 even under autocast."""
    with torch.autocast(device_type=img_emb.device.type, enabled=False):
        return img_emb.float() @ cap_emb.float().T


def sharded_scores(score_fn: Callable[[Any, Any], torch.Tensor], img_emb: Any, cap_emb: Any,
                   img_shard: int = 1000, cap_shard: int = 5000, device: torch.device | str | None = None,
                   progress: bool = False) -> torch.Tensor:
    """Score matrix (N_img, N_cap), float32 on the CPU, from ``score_fn`` applied block by block.

    ``img_emb``/``cap_emb`` support ``len()``, slicing ``x[a:b]`` along dim 0 and ``.to(device)`` (a tensor
    or a padded-sequence container). ``score_fn(img_block, cap_block)`` must return an (n_i, n_c) tensor of
    finite scores; each block is moved to ``device`` (when given) and scored under ``torch.no_grad()``.
    """
    if img_shard < 1 or cap_shard < 1:
        raise ValueError(f"shard sizes must be >= 1, got img_shard={img_shard}, cap_shard={cap_shard}")
    n_img, n_cap = len(img_emb), len(cap_emb)
    scores = torch.empty(n_img, n_cap, dtype=torch.float32)
    img_starts, cap_starts = range(0, n_img, img_shard), range(0, n_cap, cap_shard)
    bar = tqdm(total=len(img_starts) * len(cap_starts), desc="scoring", unit="block", disable=not progress)
    with torch.no_grad(), bar:
        for i0 in img_starts:
            i1 = min(i0 + img_shard, n_img)
            img_block = img_emb[i0:i1] if device is None else img_emb[i0:i1].to(device)
            for c0 in cap_starts:
                c1 = min(c0 + cap_shard, n_cap)
                cap_block = cap_emb[c0:c1] if device is None else cap_emb[c0:c1].to(device)
                block = score_fn(img_block, cap_block)
                name = f"block images [{i0}, {i1}) x captions [{c0}, {c1})"
                if tuple(block.shape) != (i1 - i0, c1 - c0):
                    raise ValueError(f"score_fn returned shape {tuple(block.shape)} for {name}; "
                                     f"expected {(i1 - i0, c1 - c0)}")
                bad = int((~torch.isfinite(block)).sum())
                if bad:
                    raise ValueError(f"score_fn returned {bad} non-finite score(s) (NaN or inf) for {name}")
                scores[i0:i1, c0:c1] = block.float().cpu()
                bar.update()
    return scores
