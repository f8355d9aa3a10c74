"""Evaluate a model on a split under a protocol: encode once, score in shards, rank, report."""

from __future__ import annotations

import time

import torch

from itrlib.data.precomp import PrecompSplit
from itrlib.data.text import Tokenizer
from itrlib.evaluation.encode import autocast_for, encode_split
from itrlib.evaluation.protocols import Protocol, evaluate_blocks
from itrlib.evaluation.scoring import sharded_scores
from itrlib.models.base import RetrievalModel


def evaluate_split(model: RetrievalModel, split: PrecompSplit, tokenizer: Tokenizer, protocol: Protocol, *,
                   batch_size: int = 256, device: torch.device | str = "cpu", amp: bool = False,
                   img_shard: int = 1000, cap_shard: int = 5000, progress: bool = False) -> dict:
    """Metrics (and per-query ranks) of ``model`` on ``split``; adds ``timing`` (seconds) to the result."""
    device = torch.device(device)
    start = time.perf_counter()
    img_emb, cap_emb = encode_split(model, split, tokenizer, batch_size=batch_size, device=device, amp=amp,
                                    progress=progress)
    encoded = time.perf_counter()
    model.eval()

    def similarity(img_slice: slice, cap_slice: slice) -> torch.Tensor:
        with autocast_for(device, amp):
            return sharded_scores(model.score, img_emb[img_slice], cap_emb[cap_slice], img_shard=img_shard,
                                  cap_shard=cap_shard, device=device, progress=progress)

    result = evaluate_blocks(similarity, split.n_images, protocol, caps_per_image=split.caps_per_image)
    result["timing"] = {"encode_s": encoded - start, "score_and_rank_s": time.perf_counter() - encoded}
    return result
