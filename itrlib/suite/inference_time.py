"""Inference time of retrieval models at the test sizes of the benchmarks (USER's Fig. 6).

:func:`measure_inference_time` feeds random inputs through a model's public contract
(:mod:`itrlib.models.base`): every image and every caption is encoded batch by batch, then every image is
scored against every caption in blocks of at most ``model.score_block_pairs`` pairs with the evaluation's own
blocked scorer (:func:`itrlib.evaluation.scoring.sharded_scores`), which returns the full float32 matrix on
the CPU. Encoding time counts the host-to-device copy of each batch and the forward passes; matching time
counts the blocked scoring, including the copy of each block to the CPU matrix. Generating the random inputs
is never timed and uses a private ``torch.Generator``, so the global torch RNG is left as it was.

The sizes are those of :data:`TEST_SIZES`. COCO 1K is the mean over 5 folds of 1000 images in the paper;
one fold is timed here (the folds have the same size, so the time of one fold is the time of each).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import islice
from typing import Any

import pandas as pd
import torch

from itrlib.data.side_inputs import SideInput
from itrlib.evaluation.encode import autocast_for
from itrlib.evaluation.scoring import block_shape, sharded_scores
from itrlib.models.base import Extras, RetrievalModel, concat_embeddings
from itrlib.progress import format_seconds, progress_bar, say

TEST_SIZES: dict[str, tuple[int, int]] = {"f30k1k": (1000, 5000), "coco1k": (1000, 5000), "coco5k": (5000, 25000)}
"""Protocol -> (images, captions) scored at test time (COCO 1K: one of the 5 folds)."""

TOKEN_RANGE = (1000, 2000)
"""Random caption token ids are drawn from [low, high): ordinary word pieces of BERT's vocabulary, no special
ids (for a BiGRU with a smaller vocabulary pass ``token_range`` inside it)."""

TIMES = ("encode_images", "encode_captions", "encode", "match", "total")
"""Keys of the seconds :func:`measure_inference_time` returns."""


def side_input_width(model: RetrievalModel, spec: SideInput, side_dims: dict[str, int] | None = None) -> int:
    """Width of the random (B, width) rows of side input ``spec``: ``side_dims[name]``, else the model
    config's ``{name}_dim`` (USER's CGE: ``clip_dim``); ValueError when neither says."""
    if side_dims and spec.name in side_dims:
        return int(side_dims[spec.name])
    width = getattr(getattr(model, "config", None), f"{spec.name}_dim", None)
    if width is None:
        raise ValueError(f"the model needs side input {spec.name!r} ({spec.per}) but its config has no "
                         f"{spec.name}_dim; pass side_dims={{{spec.name!r}: width}}")
    return int(width)


def _random_extras(model: RetrievalModel, per: str, rows: int, generator: torch.Generator,
                   side_dims: dict[str, int] | None) -> Extras:
    """Random float32 (rows, width) rows of each side input of ``model`` delivered per ``per``."""
    return {spec.name: torch.randn(rows, side_input_width(model, spec, side_dims), generator=generator)
            for spec in model.side_inputs if spec.per == per}


def random_image_batches(model: RetrievalModel, n_images: int, *, regions: int = 36, feature_dim: int,
                         batch_size: int = 128, seed: int = 0, side_dims: dict[str, int] | None = None
                         ) -> Iterator[tuple[torch.Tensor, torch.Tensor, Extras]]:
    """Yield CPU batches (images (B, regions, feature_dim) float32, lengths (B,) int64 all ``regions``,
    per-image extras (B, width)) covering ``n_images`` images; the same ``seed`` yields the same batches."""
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, n_images, batch_size):
        rows = min(batch_size, n_images - start)
        images = torch.randn(rows, regions, feature_dim, generator=generator)
        lengths = torch.full((rows,), regions, dtype=torch.int64)
        yield images, lengths, _random_extras(model, "image", rows, generator, side_dims)


def random_caption_batches(model: RetrievalModel, n_captions: int, *, caption_lengths: tuple[int, int] = (8, 16),
                           batch_size: int = 128, seed: int = 0, token_range: tuple[int, int] = TOKEN_RANGE,
                           pad_id: int = 0, side_dims: dict[str, int] | None = None
                           ) -> Iterator[tuple[torch.Tensor, torch.Tensor, Extras]]:
    """Yield CPU batches (token ids (B, L_max) int64 padded with ``pad_id``, lengths (B,) int64 drawn
    uniformly in ``caption_lengths`` (inclusive), per-caption extras (B, width)) covering ``n_captions``."""
    low, high = caption_lengths
    if not 1 <= low <= high:
        raise ValueError(f"caption_lengths must be (low, high) with 1 <= low <= high, got {caption_lengths}")
    generator = torch.Generator().manual_seed(seed + 1)  # another stream than the images'
    for start in range(0, n_captions, batch_size):
        rows = min(batch_size, n_captions - start)
        lengths = torch.randint(low, high + 1, (rows,), generator=generator)
        width = int(lengths.max())
        ids = torch.randint(token_range[0], token_range[1], (rows, width), generator=generator)
        ids.masked_fill_(torch.arange(width) >= lengths[:, None], pad_id)
        yield ids, lengths, _random_extras(model, "caption", rows, generator, side_dims)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to(extras: Extras, device: torch.device) -> Extras:
    return {name: value.to(device) for name, value in extras.items()}


def _timed_encode(encode: Any, batches: Iterator[tuple[torch.Tensor, torch.Tensor, Extras]], n_batches: int,
                  device: torch.device, amp: bool, progress: bool, desc: str) -> tuple[Any, float]:
    """(embeddings of all batches concatenated on ``device``, seconds spent copying and encoding them)."""
    chunks, seconds = [], 0.0
    with autocast_for(device, amp):
        for data, lengths, extras in progress_bar(batches, total=n_batches, desc=desc, unit="batches",
                                                  enabled=progress):
            _sync(device)
            start = time.perf_counter()
            chunks.append(encode(data.to(device), lengths.to(device), _to(extras, device)))
            _sync(device)
            seconds += time.perf_counter() - start
    return concat_embeddings(chunks), seconds


def measure_inference_time(model: RetrievalModel, *, n_images: int, n_captions: int, regions: int = 36,
                           feature_dim: int, caption_lengths: tuple[int, int] = (8, 16), batch_size: int = 128,
                           device: torch.device | str = "cpu", repeats: int = 1, seed: int = 0,
                           progress: bool = True, amp: bool = False, warmup: bool = True,
                           max_pairs_per_block: int | None = None, token_range: tuple[int, int] = TOKEN_RANGE,
                           pad_id: int = 0, side_dims: dict[str, int] | None = None,
                           return_scores: bool = False) -> dict[str, Any]:
    """Seconds to encode ``n_images`` random images (regions, feature_dim) and ``n_captions`` random captions,
    and to score all of them against each other into a float32 (n_images, n_captions) matrix.

    The model is run in eval mode under ``torch.no_grad()`` and its training flag is restored afterwards.
    ``warmup`` first encodes one batch of each and scores one block, untimed (lazy CUDA/cuDNN set-up).
    With ``repeats`` > 1 every phase keeps its fastest repeat. Returns the seconds ``encode_images``,
    ``encode_captions``, ``encode`` (their sum), ``match`` and ``total`` (encode + match), ``runs`` (the
    seconds of every repeat), and the sizes ``images``, ``captions``, ``regions``, ``feature_dim``,
    ``batch_size``, ``pairs``, ``score_block`` (rows, columns) and ``device``; with ``return_scores`` also
    ``scores``, the (n_images, n_captions) float32 CPU matrix of the last repeat.
    """
    if n_images < 1 or n_captions < 1 or repeats < 1 or batch_size < 1:
        raise ValueError(f"n_images, n_captions, batch_size and repeats must be >= 1; got {n_images}, "
                         f"{n_captions}, {batch_size}, {repeats}")
    device = torch.device(device)
    image_batches = -(-n_images // batch_size)
    caption_batches = -(-n_captions // batch_size)
    img_shard, cap_shard = block_shape(n_images, n_captions, max_pairs_per_block or model.score_block_pairs)

    def images() -> Iterator[tuple[torch.Tensor, torch.Tensor, Extras]]:
        return random_image_batches(model, n_images, regions=regions, feature_dim=feature_dim,
                                    batch_size=batch_size, seed=seed, side_dims=side_dims)

    def captions() -> Iterator[tuple[torch.Tensor, torch.Tensor, Extras]]:
        return random_caption_batches(model, n_captions, caption_lengths=caption_lengths, batch_size=batch_size,
                                      seed=seed, token_range=token_range, pad_id=pad_id, side_dims=side_dims)

    def match(img_emb: Any, cap_emb: Any, show: bool) -> tuple[torch.Tensor, float]:
        _sync(device)
        start = time.perf_counter()
        with autocast_for(device, amp):
            scores = sharded_scores(model.score, img_emb, cap_emb, img_shard=img_shard, cap_shard=cap_shard,
                                    device=device, progress=show, desc="match")
        _sync(device)
        return scores, time.perf_counter() - start

    runs: list[dict[str, float]] = []
    scores = None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if warmup:
                img_emb, _ = _timed_encode(model.encode_images, islice(images(), 1), 1, device, amp, False, "")
                cap_emb, _ = _timed_encode(model.encode_captions, islice(captions(), 1), 1, device, amp, False, "")
                match(img_emb[:img_shard], cap_emb[:cap_shard], False)
            for repeat in range(repeats):
                tag = f" ({repeat + 1}/{repeats})" if repeats > 1 else ""
                img_emb, image_s = _timed_encode(model.encode_images, images(), image_batches, device, amp,
                                                 progress, f"encode {n_images} images{tag}")
                cap_emb, caption_s = _timed_encode(model.encode_captions, captions(), caption_batches, device,
                                                   amp, progress, f"encode {n_captions} captions{tag}")
                scores, match_s = match(img_emb, cap_emb, progress)
                runs.append({"encode_images": image_s, "encode_captions": caption_s, "match": match_s})
                del img_emb, cap_emb
    finally:
        model.train(was_training)
    best = {key: min(run[key] for run in runs) for key in ("encode_images", "encode_captions", "match")}
    result: dict[str, Any] = {
        "encode_images": best["encode_images"], "encode_captions": best["encode_captions"],
        "encode": best["encode_images"] + best["encode_captions"], "match": best["match"],
        "total": best["encode_images"] + best["encode_captions"] + best["match"],
        "runs": runs, "images": n_images, "captions": n_captions, "regions": regions, "feature_dim": feature_dim,
        "batch_size": batch_size, "pairs": n_images * n_captions, "score_block": (img_shard, cap_shard),
        "device": str(device)}
    say(f"{n_images} images x {n_captions} captions on {device}: encode {format_seconds(result['encode'])}, "
        f"match {format_seconds(result['match'])}", progress)
    if return_scores:
        result["scores"] = scores
    return result


def inference_time_table(models: dict[str, RetrievalModel], sizes: dict[str, tuple[int, int]] | None = None, *,
                         feature_dim: int | dict[str, int], progress: bool = True, **options: Any) -> pd.DataFrame:
    """One row per (model, protocol) with columns model, protocol, images, captions, encode_s, match_s,
    total_s. ``sizes`` maps protocol -> (images, captions) (default :data:`TEST_SIZES`); ``feature_dim`` is
    one width for all models or one per model name; ``options`` go to :func:`measure_inference_time`."""
    sizes = TEST_SIZES if sizes is None else sizes
    rows = []
    for name, model in models.items():
        dim = feature_dim[name] if isinstance(feature_dim, dict) else feature_dim
        for protocol, (n_images, n_captions) in sizes.items():
            say(f"inference time: {name} at {protocol}", progress)
            timing = measure_inference_time(model, n_images=n_images, n_captions=n_captions, feature_dim=dim,
                                            progress=progress, **options)
            rows.append({"model": name, "protocol": protocol, "images": n_images, "captions": n_captions,
                         "encode_s": timing["encode"], "match_s": timing["match"], "total_s": timing["total"]})
    return pd.DataFrame(rows, columns=["model", "protocol", "images", "captions", "encode_s", "match_s", "total_s"])


def projected_times(timing: dict[str, Any], n_images: int, n_captions: int) -> dict[str, float]:
    """Seconds of :func:`measure_inference_time`'s ``timing`` scaled to ``n_images`` x ``n_captions``:
    image encoding in proportion to the images, caption encoding to the captions, matching to the pairs
    (every image is scored against every caption). Keys ``encode``, ``match`` and ``total``."""
    encode = (timing["encode_images"] * n_images / timing["images"]
              + timing["encode_captions"] * n_captions / timing["captions"])
    match = timing["match"] * (n_images * n_captions) / timing["pairs"]
    return {"encode": encode, "match": match, "total": encode + match}
