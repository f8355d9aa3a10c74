"""Seeds derived from a run's seed: one independent, reproducible stream per (seed, index)."""

SEED_STRIDE = 100_003
"""A prime larger than any epoch count or sequence length: ``seed * SEED_STRIDE + index`` never gives two
(seed, index) pairs of a run the same stream."""


def derived_seed(seed: int, index: int) -> int:
    """The seed of stream ``index`` (an epoch, a sequence length) of a run seeded with ``seed``."""
    return seed * SEED_STRIDE + index


def rank_seed(seed: int, rank: int) -> int:
    """The global-RNG seed of rank ``rank`` >= 1 under torch.distributed (rank 0 keeps ``seed``): the last
    indices of the run's range, which no epoch or sequence length reaches."""
    if not 1 <= rank < SEED_STRIDE:
        raise ValueError(f"rank must be in [1, {SEED_STRIDE}), got {rank}")
    return derived_seed(seed, SEED_STRIDE - rank)
