"""AFA feature aggregation (Wang et al., ICASSP 2024, Sec. 3, six steps) and masked set pooling.

Per sample, on its n valid tokens: (1) shuffle, (2) split into src = first floor(n/2) and dst = the rest,
(3) match every src token to its most cosine-similar dst token, (4) keep the k pairs with the highest
similarity (k_eff = min(k, floor(n/2))), (5) merge each kept pair by averaging — several src tokens that
chose the same dst are averaged together with it (ToMe's scatter-mean, facebookresearch/ToMe; a choice
the paper leaves open, docs/PAPER_DIFFERENCES.md section 2) — and
(6) concatenate the unmerged src tokens with all dst tokens: n - k_eff tokens remain.

Batched over samples with different lengths: padded positions are never matched, merged or kept. Steps
1-4 only choose indices and run without gradient; gradients flow through the averaged features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from itrlib.nn.functional import length_mask
from itrlib.seeds import derived_seed


def random_order(lengths: torch.Tensor, max_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, max_len) permutations: the first ``lengths[b]`` entries shuffle the valid positions of sample b,
    padded positions follow in their original order."""
    keys = torch.rand(len(lengths), max_len, generator=generator, device="cpu").to(lengths.device)
    valid = length_mask(lengths, max_len)
    keys = torch.where(valid, keys, 1.0 + torch.arange(max_len, device=lengths.device).float())
    return keys.argsort(dim=1)


def fixed_order(lengths: torch.Tensor, max_len: int, seed: int) -> torch.Tensor:
    """Like :func:`random_order`, but one fixed permutation per sequence length, seeded by (seed, length).

    The eval-time shuffle: reproducible and independent of batch composition and padding width (an item's
    embedding does not depend on which other items share its batch). Loops over distinct lengths only.
    """
    order = torch.arange(max_len, device=lengths.device).repeat(len(lengths), 1)
    for n in lengths.unique().tolist():
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(seed, n))).to(lengths.device)
        rows = (lengths == n).nonzero().squeeze(1)
        order[rows, :n] = perm
    return order


def merge_count(lengths: torch.Tensor, k: int | None = None, ratio: float | None = None) -> torch.Tensor:
    """k_eff per sample: ``min(k, floor(n/2))`` for an integer k, or ``min(floor(ratio*n), floor(n/2))``."""
    if (k is None) == (ratio is None):
        raise ValueError("give exactly one of k and ratio")
    wanted = torch.full_like(lengths, k) if k is not None else torch.floor(lengths * ratio).long()
    return torch.minimum(wanted.clamp(min=0), lengths // 2)


def aggregate_tokens(x: torch.Tensor, lengths: torch.Tensor, k_eff: torch.Tensor, order: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``k_eff[b]`` token pairs of sample b (AFA steps 2-6, after the shuffle ``order``).

    x (B, N, D), lengths (B,), k_eff (B,), order (B, N) from :func:`random_order` / :func:`fixed_order`
    -> (tokens (B, N', D) zero-padded, new lengths (B,) = lengths - k_eff), N' = max new length.
    Output order per sample: unmerged src tokens, then dst tokens, both in shuffled order.
    """
    _, n_max, dim = x.shape
    xs = x.gather(1, order.unsqueeze(-1).expand(-1, -1, dim))
    t = torch.arange(n_max, device=x.device).unsqueeze(0)
    half = (lengths // 2).unsqueeze(1)
    is_src = t < half
    is_dst = (t >= half) & (t < lengths.unsqueeze(1))
    with torch.no_grad():
        unit = F.normalize(xs.float(), dim=-1)
        sim = unit @ unit.transpose(1, 2)
        sim = sim.masked_fill(~(is_src.unsqueeze(2) & is_dst.unsqueeze(1)), -torch.inf)
        score, target = sim.max(dim=2)  # best dst per src row (first index on ties)
        score = score.masked_fill(~is_src, -torch.inf)
        rank = score.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
        merged = is_src & (rank < k_eff.unsqueeze(1))
    # step 5: every dst token becomes the mean of itself and the src tokens merged into it
    weights = merged.to(xs.dtype).unsqueeze(-1)
    sums = (xs * is_dst.to(xs.dtype).unsqueeze(-1)).scatter_add(1, target.unsqueeze(-1).expand(-1, -1, dim),
                                                                xs * weights)
    counts = is_dst.to(xs.dtype).scatter_add(1, target, merged.to(xs.dtype))
    averaged = torch.where(is_dst.unsqueeze(-1), sums / counts.clamp(min=1).unsqueeze(-1), xs)
    # step 6: keep unmerged src and all dst, packed to the front
    keep = (is_src & ~merged) | is_dst
    pack = (~keep).to(torch.int8).argsort(dim=1, stable=True)
    new_lengths = keep.sum(dim=1)
    width = int(new_lengths.max())
    out = averaged.gather(1, pack[:, :width].unsqueeze(-1).expand(-1, -1, dim))
    return out * length_mask(new_lengths, width).unsqueeze(-1).to(out.dtype), new_lengths


def masked_max(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Dimension-wise max over the valid tokens (AFA eq. 3-4): (B, N, D), (B,) -> (B, D)."""
    valid = length_mask(lengths, x.shape[1]).unsqueeze(-1)
    return x.masked_fill(~valid, -torch.inf).max(dim=1).values


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the valid tokens (Table 3 row I+II): (B, N, D), (B,) -> (B, D)."""
    valid = length_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
    return (x * valid).sum(dim=1) / lengths.clamp(min=1).unsqueeze(-1).to(x.dtype)
