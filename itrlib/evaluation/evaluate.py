"""Evaluate a model on a split under one or more protocols: encode once, score once, rank each protocol.

Protocols on the same split share the work: COCO 5-fold 1K and COCO 5K both use ``testall``, whose
1K folds are diagonal blocks of the 5K matrix, so the split is encoded and scored once. When only
multi-fold protocols are asked for (and the matrix is not kept), only the fold blocks are scored.

With a :class:`Shortlist` (two-stage retrieval, :mod:`itrlib.evaluation.two_stage`) the model scores only
each query's shortlist within each protocol block: a 1K fold shortlists among its own 1K images.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from itrlib.data.precomp import PrecompSplit
from itrlib.data.text import Tokenizer
from itrlib.evaluation.encode import autocast_for, encode_split
from itrlib.evaluation.protocols import Protocol, check_tie_rule, protocol_blocks
from itrlib.evaluation.ranking import evaluate_blocks
from itrlib.evaluation.scoring import block_shape, sharded_scores
from itrlib.evaluation.two_stage import DirectionalScores, rerank
from itrlib.models.base import RetrievalModel


@dataclass(frozen=True)
class Shortlist:
    """Two-stage retrieval: ``scores`` (N_img, N_cap) of the split by the shortlisting model, and the ``size``
    of each query's shortlist."""

    scores: torch.Tensor
    size: int


@dataclass
class SplitEvaluation:
    """Results of several protocols on one split: ``results`` protocol name -> result dict (with
    ``timing``), and the full (N_img, N_cap) float32 score matrix when it was kept."""

    results: dict[str, dict]
    scores: torch.Tensor | None


def evaluate_split(model: RetrievalModel, split: PrecompSplit, tokenizer: Tokenizer,
                   protocols: Sequence[Protocol], *, batch_size: int = 256, device: torch.device | str = "cpu",
                   amp: bool = False, max_pairs_per_block: int | None = None, ties: str = "pessimistic",
                   keep_scores: bool = False, shortlist: Shortlist | None = None, progress: bool = False
                   ) -> SplitEvaluation:
    """Encode ``split`` once, score the blocks the ``protocols`` need once, rank each protocol.

    Every protocol must evaluate ``split.split``. ``max_pairs_per_block`` bounds a score block (default:
    the model's ``score_block_pairs``). Each result gets ``timing``: ``encode_s``, ``score_s``, ``rank_s``
    (the first two shared by the split's protocols), ``pairs_scored`` and ``device``. With a ``shortlist``
    the model reranks each query's shortlist (``keep_scores`` is then refused: no full matrix exists).
    """
    check_tie_rule(ties)
    wrong = [p.name for p in protocols if p.split != split.split]
    if not protocols or wrong:
        raise ValueError(f"evaluate_split on split {split.split!r} got protocols {[p.name for p in protocols]}"
                         f"{f'; {wrong} evaluate another split' if wrong else ''}")
    if shortlist is not None and (keep_scores or tuple(shortlist.scores.shape) != (split.n_images, split.n_captions)):
        raise ValueError(f"a shortlist's scores must be ({split.n_images}, {split.n_captions}) for split "
                         f"{split.split!r}, got {tuple(shortlist.scores.shape)}; and no full matrix can be kept")
    check_split = getattr(model.config, "check_split", None)  # a model field the data contradicts (USER)
    if check_split is not None:
        check_split(split)
    device = torch.device(device)
    start = time.perf_counter()
    img_emb, cap_emb = encode_split(model, split, tokenizer, batch_size=batch_size, device=device, amp=amp,
                                    progress=progress)
    encoded = time.perf_counter()
    img_shard, cap_shard = block_shape(split.n_images, split.n_captions,
                                       max_pairs_per_block or model.score_block_pairs)
    model.eval()

    pairs = 0

    def score(images: slice, captions: slice) -> torch.Tensor | DirectionalScores:
        nonlocal pairs
        with autocast_for(device, amp):
            if shortlist is not None:
                block, scored = rerank(model.score, img_emb[images], cap_emb[captions],
                                       shortlist.scores[images, captions], shortlist.size, device=device,
                                       progress=progress)
                pairs += scored
                return block
            pairs += (images.stop - images.start) * (captions.stop - captions.start)
            return sharded_scores(model.score, img_emb[images], cap_emb[captions], img_shard=img_shard,
                                  cap_shard=cap_shard, device=device, progress=progress,
                                  desc=f"score {split.split}")

    def key(images: slice, captions: slice) -> tuple[int, int, int, int]:
        return images.start, images.stop, captions.start, captions.stop  # slices are unhashable in 3.11

    # a two-stage fold shortlists within its own gallery: no protocol's blocks are cut from another's
    needs_whole = keep_scores or (shortlist is None and any(p.folds == 1 for p in protocols))
    wanted = [(slice(0, split.n_images), slice(0, split.n_captions))] if needs_whole else [
        b for p in protocols for b in protocol_blocks(split.n_images, p, split.caps_per_image)]
    blocks: dict[tuple[int, int, int, int], torch.Tensor | DirectionalScores] = {}
    for block in wanted:
        if key(*block) not in blocks:
            blocks[key(*block)] = score(*block)
    scored = time.perf_counter()
    full = blocks[key(*wanted[0])] if needs_whole else None

    def lookup(images: slice, captions: slice) -> torch.Tensor | DirectionalScores:
        return full[images, captions] if full is not None else blocks[key(images, captions)]

    results = {}
    for protocol in protocols:
        rank_start = time.perf_counter()
        result = evaluate_blocks(lookup, split.n_images, protocol, split.caps_per_image, ties)
        result["timing"] = {"encode_s": encoded - start, "score_s": scored - encoded,
                            "rank_s": time.perf_counter() - rank_start, "pairs_scored": pairs,
                            "device": str(device)}
        results[protocol.name] = result
    return SplitEvaluation(results, full if keep_scores else None)
