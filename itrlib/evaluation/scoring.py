"""Block-sharded scoring of every image against every caption, for global and local-matching models alike.

Blocks are sized from a budget of pairs (``eval.max_pairs_per_block``, or the model's
``score_block_pairs``): a global model's block is a matmul, a pairwise model's block runs every pair through
its network, so the budget bounds memory either way. Every block must be float32: scores rounded to bf16
create ties, and ties cost recall.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from itrlib.progress import progress_bar


def block_shape(n_img: int, n_cap: int, max_pairs: int) -> tuple[int, int]:
    """(image rows, caption columns) of a score block holding at most ``max_pairs`` pairs.

    Whole caption rows are preferred (rows of the matrix are contiguous); a budget smaller than one row
    cuts the captions too.
    """
    if max_pairs < 1:
        raise ValueError(f"max_pairs per block must be >= 1, got {max_pairs}")
    cap_shard = max(1, min(n_cap, max_pairs))
    img_shard = max(1, min(n_img, max_pairs // cap_shard))
    return img_shard, cap_shard


def sharded_scores(score_fn: Callable[[Any, Any], torch.Tensor], img_emb: Any, cap_emb: Any,
                   img_shard: int = 1000, cap_shard: int = 5000, device: torch.device | str | None = None,
                   progress: bool = False, desc: str = "scoring") -> torch.Tensor:
    """Score matrix (N_img, N_cap), float32 on the CPU, from ``score_fn`` applied block by block.

    ``img_emb``/``cap_emb`` support ``len()``, slicing ``x[a:b]`` along dim 0 and ``.to(device)`` (a tensor
    or a padded-sequence container). ``score_fn(img_block, cap_block)`` must return an (n_i, n_c) float32
    tensor of finite scores; each block is moved to ``device`` (when given) and scored under
    ``torch.no_grad()``. The progress bar counts scored pairs.
    """
    if img_shard < 1 or cap_shard < 1:
        raise ValueError(f"shard sizes must be >= 1, got img_shard={img_shard}, cap_shard={cap_shard}")
    n_img, n_cap = len(img_emb), len(cap_emb)
    scores = torch.empty(n_img, n_cap, dtype=torch.float32)
    bar = progress_bar(total=n_img * n_cap, desc=desc, unit="pairs", unit_scale=True, enabled=progress)
    with torch.no_grad(), bar:
        for i0 in range(0, n_img, img_shard):
            i1 = min(i0 + img_shard, n_img)
            img_block = img_emb[i0:i1] if device is None else img_emb[i0:i1].to(device)
            for c0 in range(0, n_cap, cap_shard):
                c1 = min(c0 + cap_shard, n_cap)
                cap_block = cap_emb[c0:c1] if device is None else cap_emb[c0:c1].to(device)
                scores[i0:i1, c0:c1] = checked_block(score_fn(img_block, cap_block), (i0, i1), (c0, c1))
                bar.update((i1 - i0) * (c1 - c0))
    return scores


def checked_block(block: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """``block`` of rows ``[rows)`` x columns ``[cols)`` on the CPU, checked by :func:`checked_scores`."""
    return checked_scores(block, (rows[1] - rows[0], cols[1] - cols[0]),
                          f"block images [{rows[0]}, {rows[1]}) x captions [{cols[0]}, {cols[1]})")


def checked_scores(block: torch.Tensor, expected: tuple[int, int], name: str) -> torch.Tensor:
    """``block`` on the CPU after checking its shape (``expected``), dtype (float32) and finiteness; errors
    name the scores as ``name``."""
    if tuple(block.shape) != expected:
        raise ValueError(f"score_fn returned shape {tuple(block.shape)} for {name}; expected {expected}")
    if block.dtype != torch.float32:
        raise TypeError(f"score_fn returned {block.dtype} scores for {name}; scores must be float32 (compute "
                        "them with autocast disabled, e.g. itrlib.nn.functional.inner_products_fp32): rounded "
                        "scores create ties, which cost recall")
    # one reduction in the common case: a sum is finite only if every term is (NaN and inf propagate); a finite
    # block whose sum overflows is counted element by element and passes
    bad = 0 if torch.isfinite(block.sum()) else int(block.numel() - torch.isfinite(block).sum())
    if bad:
        raise ValueError(f"score_fn returned {bad} non-finite score(s) (NaN or inf) for {name}")
    return block.cpu()
