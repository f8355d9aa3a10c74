"""Two-stage retrieval: a global model's scores shortlist, a pairwise model reranks the shortlist.

As LAVIS / ALBEF / BLIP evaluate with ``k_test``: for each image query the ``m`` captions with the highest
shortlist scores, for each caption query the ``m`` images with the highest, are scored by the pairwise model
and ranked by those scores above every other item; the items outside a query's shortlist keep the shortlist
model's order below them. With ``m`` at least the gallery size this is the pairwise model's full ranking.

Each direction gets its own matrix (:class:`DirectionalScores`): the image queries rank rows of ``i2t``, the
caption queries columns of ``t2i``. A shortlisted item's entry is ``above + its dense rank among the query's
shortlisted scores`` and every other entry keeps its shortlist score, below ``above``: integers and float32
values are exact in float64, so the ranking (ties included) is that of the two-level order itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from itrlib.evaluation.scoring import checked_scores
from itrlib.progress import progress_bar


@dataclass(frozen=True)
class DirectionalScores:
    """(N_img, N_cap) float64 scores per direction: image queries rank the rows of ``i2t``, caption queries
    the columns of ``t2i``."""

    i2t: torch.Tensor
    t2i: torch.Tensor


def shortlists(scores: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shortlist scores (N_img, N_cap) -> (captions of each image (N_img, m'), images of each caption
    (N_cap, m'')): the indices of the highest scores (``m`` capped at the gallery size; ties broken by
    ``torch.topk``)."""
    if m < 1:
        raise ValueError(f"the shortlist must hold at least 1 item, got {m}")
    n_img, n_cap = scores.shape
    return scores.topk(min(m, n_cap), dim=1).indices, scores.t().topk(min(m, n_img), dim=1).indices


def dense_ranks(values: torch.Tensor) -> torch.Tensor:
    """Per row, the dense rank of each value (0 for the lowest; equal values, equal ranks) as float64."""
    ordered, order = values.sort(dim=1)
    steps = torch.zeros_like(ordered, dtype=torch.float64)
    steps[:, 1:] = (ordered[:, 1:] != ordered[:, :-1]).to(torch.float64)
    return torch.empty_like(steps).scatter_(1, order, steps.cumsum(1))


def two_level(shortlist_scores: torch.Tensor, picked: torch.Tensor, reranked: torch.Tensor) -> torch.Tensor:
    """Rows of ``shortlist_scores`` (Q, N) as float64 with the entries ``picked`` (Q, m) replaced by values
    above every other entry of the row, ordered as ``reranked`` (Q, m)."""
    out = shortlist_scores.to(torch.float64)
    above = float(out.abs().max().ceil()) + 1.0
    return out.scatter_(1, picked, above + dense_ranks(reranked))


PairScorer = Callable[[Any, Any], torch.Tensor]
"""``score(img_emb_block, cap_emb_block) -> (n_i, n_c)`` float32: a model's :meth:`score`."""


def rerank(score: PairScorer, img_emb: Any, cap_emb: Any, shortlist_scores: torch.Tensor, m: int, *,
           device: torch.device | str = "cpu", progress: bool = False) -> tuple[DirectionalScores, int]:
    """The two-stage scores of one gallery block and the number of pairs the pairwise model scored.

    ``img_emb`` / ``cap_emb``: the block's N_img / N_cap embeddings (tensors, or a type indexable by an index
    tensor such as :class:`~itrlib.nn.padded.PaddedSet`); ``shortlist_scores`` (N_img, N_cap) the global
    model's scores of the same block. Each query's shortlist is scored as one (1, m) or (m, 1) block.
    """
    captions_of, images_of = shortlists(shortlist_scores, m)
    i2t = torch.empty(captions_of.shape, dtype=torch.float32)
    t2i = torch.empty(images_of.shape, dtype=torch.float32)
    bar = progress_bar(total=len(i2t) + len(t2i), desc="rerank", unit="queries", enabled=progress)
    with torch.no_grad(), bar:
        for i, picked in enumerate(captions_of):
            block = score(img_emb[i:i + 1].to(device), cap_emb[picked].to(device))
            i2t[i] = checked_scores(block, (1, len(picked)), f"the shortlist of image query {i}").reshape(-1)
            bar.update(1)
        for c, picked in enumerate(images_of):
            block = score(img_emb[picked].to(device), cap_emb[c:c + 1].to(device))
            t2i[c] = checked_scores(block, (len(picked), 1), f"the shortlist of caption query {c}").reshape(-1)
            bar.update(1)
    scores = DirectionalScores(two_level(shortlist_scores, captions_of, i2t),
                               two_level(shortlist_scores.t().contiguous(), images_of, t2i).t())
    return scores, i2t.numel() + t2i.numel()

