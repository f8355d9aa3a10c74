"""Is one method's rSum really higher than another's? A paired bootstrap over the test images.

Two evaluations of the same split under the same protocol hold per-query ranks (``eval-<protocol>.json``:
``ranks.i2t``, one per image, and ``ranks.t2i``, one per caption, caption c belonging to image
c // caps_per_image). The image is the unit that is resampled: it carries its own image query and its
captions' queries, so a resample keeps both directions of one image together, and the same resample is used
for both methods (paired). For a protocol of equal folds (COCO 5-fold 1K) the fold average of every recall is
the recall over all the folds' queries, so the rSum difference is

    d = mean_i x_i,   x_i = 100 * sum_K ( [a_i < K] - [b_i < K]
                                          + (1 / caps) * sum_{c of i} ([a_c < K] - [b_c < K]) ),  K in (1, 5, 10)

(a, b: the two methods' 0-based ranks) and a bootstrap replicate is the same mean over a resample of images.
The interval is the percentile interval of the replicates; a difference whose interval holds 0 is not
significant at that level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from itrlib.errors import DataError

RECALL_KS = (1, 5, 10)


@dataclass(frozen=True)
class BootstrapInterval:
    """The observed rSum difference A - B and its bootstrap interval at ``level`` (e.g. 0.95)."""

    difference: float
    low: float
    high: float
    level: float
    samples: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0 (the difference holds beyond the resampling noise of the test set)."""
        return self.low > 0 or self.high < 0


def per_image_rsum_terms(i2t: Sequence[int], t2i: Sequence[int], caps_per_image: int = 5,
                         ks: Sequence[int] = RECALL_KS) -> np.ndarray:
    """(N_img,) float64: image i's share of the rSum, 100 * sum_K ([r_i < K] + mean_{c of i} [r_c < K]); the
    rSum of the split is their mean. ``i2t`` (N_img,) and ``t2i`` (N_img * caps_per_image,) 0-based ranks."""
    i2t, t2i = np.asarray(i2t), np.asarray(t2i)
    if i2t.ndim != 1 or i2t.size == 0 or t2i.shape != (i2t.size * caps_per_image,):
        raise DataError(f"per-query ranks: {i2t.size} image queries and {t2i.size} caption queries, expected "
                        f"{caps_per_image} caption queries per image")
    image_hits = sum((i2t < k).astype(np.float64) for k in ks)
    caption_hits = sum((t2i < k).astype(np.float64) for k in ks).reshape(i2t.size, caps_per_image).mean(axis=1)
    return 100.0 * (image_hits + caption_hits)


def paired_bootstrap(a: dict | Sequence[dict], b: dict | Sequence[dict], *, samples: int = 2000,
                     level: float = 0.95, seed: int = 0, caps_per_image: int = 5) -> BootstrapInterval:
    """Interval of rSum(A) - rSum(B) from eval results (``eval-<protocol>.json`` dicts) of the same split and
    protocol, resampling the test images ``samples`` times (``seed``: the same draws every call).

    A and B may each be several runs (seeds): each image's term is then averaged over the method's runs, so the
    difference is that of the mean rSums and the interval covers the test set's sampling (the seeds' own spread
    is the runs' standard deviation, reported beside it)."""
    runs_a, runs_b = ([a] if isinstance(a, dict) else list(a)), ([b] if isinstance(b, dict) else list(b))
    if not runs_a or not runs_b:
        raise ValueError("each side needs at least one evaluation")
    first = runs_a[0]
    for other in [*runs_a[1:], *runs_b]:
        for key in ("protocol", "split", "n_images"):
            if first.get(key) != other.get(key):
                raise DataError(f"the evaluations differ in {key} ({first.get(key)!r} vs {other.get(key)!r}): a "
                                "paired bootstrap compares methods on the same test queries")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x = _mean_terms(runs_a, caps_per_image) - _mean_terms(runs_b, caps_per_image)
    replicates = bootstrap_means(x, samples, seed)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return BootstrapInterval(float(x.mean()), float(low), float(high), level, samples)


def _mean_terms(runs: Sequence[dict], caps_per_image: int) -> np.ndarray:
    """(N_img,) per-image rSum terms averaged over ``runs``."""
    return np.mean([per_image_rsum_terms(r["ranks"]["i2t"], r["ranks"]["t2i"], caps_per_image) for r in runs], axis=0)


def bootstrap_means(x: np.ndarray, samples: int, seed: int = 0) -> np.ndarray:
    """(samples,) means of ``x`` (N,) over resamples of its N entries with replacement: replicate s uses the
    multinomial counts of row s of ``numpy.random.default_rng(seed)``, so a reference can redraw them."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    counts = np.random.default_rng(seed).multinomial(x.size, np.full(x.size, 1.0 / x.size), size=samples)
    return counts @ x / x.size
