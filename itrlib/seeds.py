"""Seeds derived from a run's seed: one independent, reproducible stream per (seed, index)."""

SEED_STRIDE = 100_003
"""A prime larger than any epoch count or sequence length: ``seed * SEED_STRIDE + index`` never gives two
(seed, index) pairs of a run the same stream."""


def derived_seed(seed: int, index: int) -> int:
    """The seed of stream ``index`` (an epoch, a sequence length) of a run seeded with ``seed``."""
    return seed * SEED_STRIDE + index
