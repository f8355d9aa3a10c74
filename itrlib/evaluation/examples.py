"""Retrieval examples of a score matrix: the top-ranked captions of image queries and the top-ranked images
of caption queries, with the ground truth marked (the papers' qualitative figures).

Items are ranked by descending score; equal scores keep the lower index first (a stable sort). Under ties
the rank shown in a figure can therefore differ from both tie rules of :mod:`itrlib.evaluation.metrics`
(pessimistic, and the official stable sort where the higher index ranks first): figures only, never metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RetrievalExample:
    """One query's ranking: ``top`` item indices best first, ``correct`` per top item, ``gt_rank`` the
    1-based rank of the best-ranked ground-truth item and ``gt`` the ground-truth item indices."""

    query: int
    top: tuple[int, ...]
    correct: tuple[bool, ...]
    gt_rank: int
    gt: tuple[int, ...]


def _check(scores: np.ndarray, caps_per_image: int, queries: Sequence[int], n_queries: int, k: int) -> None:
    if scores.ndim != 2 or scores.shape[1] != scores.shape[0] * caps_per_image:
        raise ValueError(f"scores must be (N_img, N_img*{caps_per_image}), got {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    bad = [q for q in queries if not 0 <= q < n_queries]
    if bad:
        raise ValueError(f"query indices {bad} outside [0, {n_queries})")


def _examples(rows: np.ndarray, queries: Sequence[int], gt: np.ndarray, k: int) -> list[RetrievalExample]:
    """rows: (Q, N) scores of the queries; gt: (Q, G) ground-truth item indices of each query."""
    order = np.argsort(-rows, axis=1, kind="stable")  # (Q, N) item indices, best first
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.arange(rows.shape[1])[None, :].repeat(len(rows), 0), axis=1)
    gt_rank = np.take_along_axis(position, gt, axis=1).min(axis=1) + 1  # (Q,)
    top = order[:, :k]
    correct = (top[:, :, None] == gt[:, None, :]).any(axis=2)  # (Q, k)
    return [RetrievalExample(int(q), tuple(map(int, t)), tuple(map(bool, c)), int(r), tuple(map(int, g)))
            for q, t, c, r, g in zip(queries, top, correct, gt_rank, gt, strict=True)]


def text_retrieval(scores: np.ndarray, images: Sequence[int], k: int = 5, caps_per_image: int = 5
                   ) -> list[RetrievalExample]:
    """Image queries ``images`` against every caption of ``scores`` (N_img, N_cap): top-``k`` captions."""
    scores = np.asarray(scores)
    _check(scores, caps_per_image, images, scores.shape[0], k)
    queries = np.asarray(images, dtype=np.int64)
    gt = queries[:, None] * caps_per_image + np.arange(caps_per_image)[None, :]
    return _examples(scores[queries], images, gt, min(k, scores.shape[1]))


def image_retrieval(scores: np.ndarray, captions: Sequence[int], k: int = 5, caps_per_image: int = 5
                    ) -> list[RetrievalExample]:
    """Caption queries ``captions`` against every image of ``scores`` (N_img, N_cap): top-``k`` images."""
    scores = np.asarray(scores)
    _check(scores, caps_per_image, captions, scores.shape[1], k)
    queries = np.asarray(captions, dtype=np.int64)
    return _examples(scores[:, queries].T, captions, (queries // caps_per_image)[:, None], min(k, scores.shape[0]))


def sample_queries(n_items: int, count: int, seed: int = 0) -> list[int]:
    """``count`` distinct indices in [0, n_items), sorted, drawn with ``seed`` (all of them when fewer)."""
    if count >= n_items:
        return list(range(n_items))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n_items, size=count, replace=False))
