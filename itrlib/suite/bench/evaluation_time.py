"""``evaluation_time``: a whole evaluation's projected seconds against the gallery size (1K, 5K, 25K images)
for a global model, MVSEN (each direction, the ensemble) and two-stage MVSEN, from rates measured in the
same run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import torch

from itrlib.engine.components import build_tokenizer, create_model
from itrlib.evaluation.metrics import retrieval_metrics
from itrlib.models.base import RetrievalModel
from itrlib.suite.bench.ranking import tie_free_sims
from itrlib.suite.bench.timing import time_call
from itrlib.suite.bench.train_step import BERT_BASE, SPECIAL_TOKENS, bert_folder, step_config
from itrlib.suite.inference_time import (
    measure_inference_time,
    projected_times,
    random_caption_batches,
    random_image_batches,
)

GALLERY_IMAGES = (1000, 5000, 25000)
"""Gallery sizes of :func:`evaluation_time`: images, each with 5 captions."""


EVALUATION_MODELS = {"VSE∞": ("vse_f30k", ()), "MVSEN t2i": ("mvsen_f30k", ("model.direction=t2i",)),
                     "MVSEN i2t": ("mvsen_f30k", ("model.direction=i2t",))}


def _side_widths(model: RetrievalModel) -> dict[str, int]:
    """The widths the model declares for its side inputs (MVSEN's training labels), for random rows of them."""
    return {spec.name: spec.width for spec in model.side_inputs if spec.width}


def _per_query_seconds(model: RetrievalModel, m: int, feature_dim: int, token_range: tuple[int, int]
                       ) -> tuple[float, float]:
    """Seconds of ``model.score`` on the blocks a two-stage rerank scores: one image against ``m`` captions, one
    caption against ``m`` images (random inputs, encoded by the model; median of 3)."""
    features, lengths, extras = next(random_image_batches(model, m, feature_dim=feature_dim, batch_size=m,
                                                          side_dims=_side_widths(model)))
    ids, caption_lengths, caption_extras = next(random_caption_batches(model, m, batch_size=m,
                                                                       token_range=token_range,
                                                                       side_dims=_side_widths(model)))
    with torch.no_grad():
        images = model.encode_images(features, lengths, extras)
        captions = model.encode_captions(ids, caption_lengths, caption_extras)
        one_image = time_call(lambda: model.score(images[:1], captions), 3, warmup=1) / 1e3
        one_caption = time_call(lambda: model.score(images, captions[:1]), 3, warmup=1) / 1e3
    return one_image, one_caption


def evaluation_time(device: torch.device | str = "cpu", galleries: tuple[int, ...] = GALLERY_IMAGES,
                    sample: tuple[int, int] = (100, 500), shortlist: int = 64, bert: dict[str, int] | None = None,
                    feature_dim: int = 2048) -> pd.DataFrame:
    """Projected evaluation seconds against the gallery size (N images, 5N captions) of a global model (VSE∞),
    a pairwise one (MVSEN t2i, i2t, and their ensemble) and two-stage MVSEN (VSE∞ shortlisting ``shortlist``
    candidates per query, each direction model rescoring them), at the paper's widths with a random-weight
    BERT-base. From rates measured here: encoding and full scoring on ``sample`` (images, captions)
    (:func:`~itrlib.suite.inference_time.measure_inference_time`, scaled by
    :func:`~itrlib.suite.inference_time.projected_times`), ranking on the 1K x 5K and 5K x 25K matrices (scaled
    by the matrix size), a rerank's (1, M) and (M, 1) blocks (:func:`_per_query_seconds`)."""
    device = torch.device(device)
    bert_shape = {**BERT_BASE, **(bert or {})}
    tokens = (max(SPECIAL_TOKENS) + 1, min(2000, bert_shape["vocab"]))  # ordinary word pieces
    timings, per_query = {}, {}
    with bert_folder(None, bert_shape) as folder:
        for label, (preset, overrides) in EVALUATION_MODELS.items():
            config = step_config(preset, overrides, folder, 36, 1024, 2048)
            model = create_model(config, feature_dim, build_tokenizer(config.text, Path(tempfile.gettempdir())))
            model = model.to(device).eval()
            timings[label] = measure_inference_time(model, n_images=sample[0], n_captions=sample[1],
                                                    feature_dim=feature_dim, device=device, progress=False,
                                                    token_range=tokens, side_dims=_side_widths(model))
            if label != "VSE∞":
                per_query[label] = _per_query_seconds(model, shortlist, feature_dim, tokens)
    rank_rate = {}  # seconds per matrix entry, measured on the largest matrix not above the gallery's
    for n_img in (1000, 5000):
        sims = tie_free_sims(n_img)
        rank_rate[n_img] = time_call(lambda sims=sims: retrieval_metrics(sims), 3, warmup=1) / 1e3 / sims.size
    rows = []
    for n_img in galleries:
        n_cap = 5 * n_img
        rank = rank_rate[5000 if n_img >= 5000 else 1000] * n_img * n_cap
        total = {label: projected_times(timing, n_img, n_cap)["total"] + rank for label, timing in timings.items()}
        encode = {label: projected_times(timing, n_img, n_cap)["encode"] for label, timing in timings.items()}
        total["MVSEN t2i+i2t"] = total["MVSEN t2i"] + total["MVSEN i2t"] - rank
        rerank = {label: encode[label] + n_img * one_image + n_cap * one_caption
                  for label, (one_image, one_caption) in per_query.items()}
        for label, seconds in rerank.items():
            total[f"two-stage {label} (M={shortlist})"] = total["VSE∞"] + seconds
        total[f"two-stage MVSEN t2i+i2t (M={shortlist})"] = total["VSE∞"] + sum(rerank.values())
        rows.append({"gallery": f"{n_img:,} images x {n_cap:,} captions",
                     **{f"{label} s": seconds for label, seconds in total.items()}})
    return pd.DataFrame(rows)
