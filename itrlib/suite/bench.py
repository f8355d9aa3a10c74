"""``make bench``: micro-benchmarks, each printed as a Markdown table and saved under outputs/bench/.

- ``afa``: the cost of aggregation + MAX_dim selection against the MLP it follows (the issue's setting:
  batch 128 x 36 regions x 1024-d, captions of 12-40 tokens), forward and forward+backward.
- ``ranking``: ``retrieval_metrics`` against a per-query argsort written in the style of the official
  VSE∞ evaluation, on the same tie-free F30K 1K (1000 x 5000) and COCO 5K (5000 x 25000) float32
  matrices; the bench fails if ranks, recalls or top-1 differ.

- ``train_step``: one full training step (``model.losses`` + backward + gradient clipping + optimiser step, as
  the trainer's ``_train_step``) of every model (VSE∞, AFA, USER with SGE and both queues, MVSEN in both
  directions) at the paper's dimensions and its preset's batch (128; MVSEN 64): 36 regions x 2048-d, a
  BERT-base-shaped text encoder with random weights (saved to a temporary folder, nothing downloaded), embed
  1024, captions of 8-16 tokens; seconds per step, images per second against VSE∞'s, and a per-phase profile
  of the USER step (:func:`user_step_profile`).

- ``global_scoring``: a global model's whole F30K 1K and COCO 5K score matrices as evaluation computes them
  (block-sharded float32 inner products) beside one plain matrix product, in GFLOP/s and as a fraction of the
  machine's float32 matrix-product rate.

- ``evaluation_time``: a whole evaluation's projected seconds against the gallery size (1K, 5K, 25K images
  with 5 captions each) for a global model, MVSEN (each direction, the ensemble) and two-stage MVSEN, from
  rates measured in the same run (:func:`evaluation_time`).

- ``mvsen_scoring``: MVSEN's pairwise scoring at the paper's widths (36 regions x 1024-d, captions of 10-20
  words, d_c 256, 3 GCN layers, random weights): pairs per second of the batched :func:`block_scores`
  against :func:`caption_loop_scores`, the release's ``shard_xattn`` way (blocks of 64 images, one caption
  at a time, both attention directions, two projections per GCN layer), in the same run on the same inputs;
  the ratio, the max |delta| between the two, each one's GFLOP/s and the fraction of the machine's sgemm rate
  the batched scorer reaches, the projected full F30K 1K / COCO 5K scoring time, and the projected two-stage
  COCO 5K time for several shortlist sizes (``mvsen_two_stage.md`` and its plot ``mvsen_two_stage.png``).

``python -m itrlib.suite.bench --only ranking`` runs one of them (``--only train_step --steps 3`` for a shorter run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from itrlib.config import RunConfig, load_config
from itrlib.data.collate import Batch
from itrlib.engine.components import build_tokenizer, create_model
from itrlib.evaluation.encode import autocast_for
from itrlib.evaluation.metrics import _lanes, retrieval_metrics
from itrlib.evaluation.scoring import block_shape, sharded_scores
from itrlib.io import atomic_write_text
from itrlib.models.base import RetrievalModel
from itrlib.models.mvsen import DIRECTIONS, NOMINAL_NODES, PASS_MB
from itrlib.nn.afa_aggregation import aggregate_tokens, masked_max, merge_count, random_order
from itrlib.nn.functional import inner_products_fp32
from itrlib.nn.mlp import ResidualProjection
from itrlib.nn.mvsen_similarity_reasoning import SimilarityGraph, block_scores
from itrlib.nn.padded import PaddedSet
from itrlib.suite.inference_time import (
    measure_inference_time,
    projected_times,
    random_caption_batches,
    random_image_batches,
)
from itrlib.suite.report.plots import save_figure


def time_call(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds (CUDA synchronised when in use)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def afa_enhancement(device: torch.device, batch: int = 128, dim: int = 1024, repeats: int = 20) -> pd.DataFrame:
    """Rows per modality: MLP time vs aggregation + selection time (ms), forward and forward+backward."""
    torch.manual_seed(0)
    rows = []
    cases = {"image (36 regions, 2048-d in)": (torch.full((batch,), 36), 2048),
             "text (12-40 tokens, 768-d in)": (torch.randint(12, 41, (batch,)), 768)}
    for name, (lengths, in_dim) in cases.items():
        lengths = lengths.to(device)
        mlp = ResidualProjection(in_dim, dim).to(device)
        x = torch.randn(batch, int(lengths.max()), in_dim, device=device)
        k_eff = merge_count(lengths, ratio=0.25)
        tokens = mlp(x).detach().requires_grad_()

        def aggregate_select(tokens=tokens, lengths=lengths, k_eff=k_eff):
            merged, new = aggregate_tokens(tokens, lengths, k_eff, random_order(lengths, tokens.shape[1]))
            return masked_max(merged, new)

        def mlp_fwd_bwd(mlp=mlp, x=x):
            mlp(x).sum().backward()

        def agg_fwd_bwd(fn=aggregate_select):
            fn().sum().backward()

        with torch.no_grad():
            mlp_fwd = time_call(lambda mlp=mlp, x=x: mlp(x), repeats)
            agg_fwd = time_call(aggregate_select, repeats)
        mlp_train = time_call(mlp_fwd_bwd, repeats)
        agg_train = time_call(agg_fwd_bwd, repeats)
        rows.append({"modality": name, "MLP fwd (ms)": mlp_fwd, "aggregation+MAX fwd (ms)": agg_fwd,
                     "ratio fwd": agg_fwd / mlp_fwd, "MLP fwd+bwd (ms)": mlp_train,
                     "aggregation+MAX fwd+bwd (ms)": agg_train, "ratio fwd+bwd": agg_train / mlp_train})
    return pd.DataFrame(rows)


def tie_free_sims(n_img: int, caps_per_image: int = 5, seed: int = 0) -> np.ndarray:
    """(n_img, n_img*caps_per_image) float32 standard-normal scores with no tie that a rank or a top-1 could
    depend on: entries equal to a row's or a column's ground-truth score or maximum are redrawn until each
    of those values occurs once in its row (column). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    sims = rng.standard_normal((n_img, n_img * caps_per_image), dtype=np.float32)
    while (tied := _tied_entries(sims, caps_per_image)).any():
        sims[tied] = rng.standard_normal(int(tied.sum()), dtype=np.float32)
    return sims


def _tied_entries(sims: np.ndarray, caps_per_image: int) -> np.ndarray:
    """(N_img, N_cap) mask of the entries equal to a reference value of their row or column (best ground
    truth, maximum) that occurs more than once there."""
    n_img = sims.shape[0]
    gt = sims.reshape(n_img, n_img, caps_per_image)[np.arange(n_img), np.arange(n_img)]  # (N_img, caps)
    tied = np.zeros(sims.shape, dtype=bool)
    for axis, reference in ((1, gt.max(axis=1)), (1, sims.max(axis=1)), (0, gt.reshape(-1)), (0, sims.max(axis=0))):
        equal = sims == np.expand_dims(reference, axis)
        tied |= equal & np.expand_dims(equal.sum(axis=axis) > 1, axis)
    return tied


def official_style_ranks(sims: np.ndarray, caps_per_image: int = 5) -> dict[str, np.ndarray]:
    """Per-query ranks the way the official evaluation loops: ``inds = np.argsort(scores)[::-1]``, the rank
    is ``np.where(inds == gt)[0][0]`` (i2t: minimum over the image's captions), top-1 is ``inds[0]``.
    ``sims`` (N_img, N_cap); returns ``i2t``, ``i2t_top1`` (N_img,) and ``t2i``, ``t2i_top1`` (N_cap,)."""
    n_img, n_cap = sims.shape
    out = {key: np.zeros(n, dtype=np.int64) for key, n in
           (("i2t", n_img), ("i2t_top1", n_img), ("t2i", n_cap), ("t2i_top1", n_cap))}
    for i in range(n_img):
        inds = np.argsort(sims[i])[::-1]
        out["i2t"][i] = min(np.where(inds == c)[0][0] for c in range(caps_per_image * i, caps_per_image * (i + 1)))
        out["i2t_top1"][i] = inds[0]
    by_caption = sims.T
    for c in range(n_cap):
        inds = np.argsort(by_caption[c])[::-1]
        out["t2i"][c] = np.where(inds == c // caps_per_image)[0][0]
        out["t2i_top1"][c] = inds[0]
    return out


def _mismatches(reference: dict[str, np.ndarray], metrics: dict[str, float], ranks: dict) -> list[str]:
    """Names of the ranks, recalls and top-1 of ``retrieval_metrics`` output that differ from ``reference``."""
    bad = [f"{d} ranks" for d in ("i2t", "t2i") if not np.array_equal(ranks[d].ranks, reference[d])]
    bad += [f"{d} top1" for d in ("i2t", "t2i")
            if ranks[d].top1 is not None and not np.array_equal(ranks[d].top1, reference[f"{d}_top1"])]
    return bad + [key for key, value in _reference_metrics(reference).items() if metrics.get(key) != value]


def _reference_metrics(reference: dict[str, np.ndarray]) -> dict[str, float]:
    """The official metric formulas on reference ranks: R@K = 100 * mean(rank < K), medr, meanr, rsum."""

    out: dict[str, float] = {}
    for d in ("i2t", "t2i"):
        r = reference[d]
        out.update({f"{d}_r{k}": 100.0 * len(np.where(r < k)[0]) / len(r) for k in (1, 5, 10)})
        out.update({f"{d}_medr": float(np.floor(np.median(r)) + 1), f"{d}_meanr": float(r.mean() + 1)})
    out["rsum"] = (out["i2t_r1"] + out["i2t_r5"] + out["i2t_r10"]  # left to right as the official code (sum()
                   + out["t2i_r1"] + out["t2i_r5"] + out["t2i_r10"])  # compensates from Python 3.12 on)
    return out


RANKING_CASES = {"F30K 1K": 1000, "COCO 5K": 5000}
RANKING_VARIANTS = {  # name -> (retrieval_metrics keywords, on the CUDA device)
    "ours (pessimistic, top-1)": ({}, False),
    "ours (pessimistic, no top-1)": ({"top1": False}, False),
    "ours (stable, top-1)": ({"ties": "stable"}, False),
    "ours, torch backend (CPU)": ({"backend": "torch"}, False),
    "ours, torch backend (CUDA)": ({"backend": "torch"}, True),
}


def ranking_speed(repeats: int = 20, cuda: bool = False) -> pd.DataFrame:
    """Rows per (matrix, variant): median time of ``retrieval_metrics`` (ms), the official-style time (ms,
    median of 2 calls for 1K, 1 call for 5K), the ratio, and whether ranks, recalls and top-1 are identical.
    Raises if any differ."""
    rows = []
    for case, n_img in RANKING_CASES.items():
        sims = tie_free_sims(n_img)
        reference = official_style_ranks(sims)
        official_ms = time_call(lambda sims=sims: official_style_ranks(sims), 2 if n_img <= 1000 else 1, warmup=0)
        for variant, (kwargs, on_cuda) in RANKING_VARIANTS.items():
            if on_cuda and not cuda:
                continue
            scores = torch.from_numpy(sims).cuda() if on_cuda else sims
            metrics, ranks = retrieval_metrics(scores, **kwargs)
            slow = kwargs.get("backend") == "torch" and not on_cuda  # seconds a call: fewer repeats
            ms = time_call(lambda scores=scores, kwargs=kwargs: retrieval_metrics(scores, **kwargs),
                           max(3, repeats // 5) if slow else repeats, warmup=1 if slow else 3)
            bad = _mismatches(reference, metrics, ranks)
            if bad:
                raise RuntimeError(f"ranking bench, {case}, {variant}: differs from the official style in {bad}")
            rows.append({"matrix": f"{case} ({n_img}x{5 * n_img})", "variant": variant, "time (ms)": ms,
                         "official-style (ms)": official_ms, "speed-up": official_ms / ms,
                         "identical ranks, recalls, top-1": "yes"})
    return pd.DataFrame(rows)


STEP_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "VSE∞": ("vse_f30k", ()), "AFA": ("afa_f30k", ()), "USER (SGE, DVQ+DTQ)": ("user_f30k", ()),
    "MVSEN t2i": ("mvsen_f30k", ("model.direction=t2i",)), "MVSEN i2t": ("mvsen_f30k", ("model.direction=i2t",))}
"""Row label -> (packaged preset, overrides) of the model whose training step :func:`train_step` times."""
STEP_OFFICIAL = {"user_f30k": "12.8-13.3", "vse_f30k": "7.5-8.2"}
"""Seconds per step of the official code on the issue's 2-core CPU, as reported in the issue (not measured)."""

BERT_BASE = {"hidden": 768, "layers": 12, "heads": 12, "intermediate": 3072, "vocab": 30522}
"""``transformers.BertConfig()`` defaults (BERT-base shape)."""
_SPECIAL_TOKENS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}  # bert-base-uncased ids


def write_random_bert(folder: Path, hidden: int = 768, layers: int = 12, heads: int = 12, intermediate: int = 3072,
                      vocab: int = 30522, seed: int = 0) -> Path:
    """Save a randomly initialised ``BertModel`` (BERT-base by default) and a placeholder WordPiece
    ``vocab.txt`` (bert-base-uncased special-token ids) into ``folder``: a ``text.bert_path`` for benchmarks
    that need the shape of BERT, not its weights. Nothing is downloaded."""
    from transformers import BertConfig, BertModel

    if vocab <= max(_SPECIAL_TOKENS):
        raise ValueError(f"vocab must exceed {max(_SPECIAL_TOKENS)} (special-token ids), got {vocab}")
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=intermediate)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        BertModel(config).save_pretrained(folder)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    words = [_SPECIAL_TOKENS.get(i, f"[unused{i}]" if i < 100 else f"tok{i}") for i in range(vocab)]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    return folder


def synthetic_batch(batch: int, regions: int, feature_dim: int, vocab: int, min_len: int = 8, max_len: int = 16,
                    seed: int = 0) -> Batch:
    """A training batch: (B, K, D) regions (all K valid), captions ``[CLS] ids [SEP]`` of lengths uniform in
    [min_len, max_len] (special tokens included), padded with 0 to the batch maximum.

    Regions are ``relu`` of standard-normal draws: non-negative with about half exact zeros, like pooled
    ReLU features (BUTD precomp, the embedded data). Dense Gaussian regions would hide the cost of
    subnormals that zero features can produce downstream (USER's enhancement did, 2.8x per step)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (batch,), generator=gen)
    ids = torch.randint(max(_SPECIAL_TOKENS) + 1, vocab, (batch, int(lengths.max())), generator=gen)
    ids[:, 0] = 101
    ids[torch.arange(batch), lengths - 1] = 102
    ids[torch.arange(ids.shape[1]) >= lengths[:, None]] = 0
    return Batch(images=torch.randn(batch, regions, feature_dim, generator=gen).relu_(),
                 image_lengths=torch.full((batch,), regions), captions=ids, caption_lengths=lengths,
                 image_index=torch.arange(batch), caption_index=torch.arange(batch))


def _step_config(preset: str, overrides: tuple[str, ...], bert_path: Path, regions: int, embed: int, queue: int,
                 batch: int | None = None) -> RunConfig:
    """The preset at its own batch size (the paper's) unless ``batch``, with the bench's text weights and widths."""
    extra = [f"text.bert_path={bert_path}", *overrides, *([f"train.batch_size={batch}"] if batch else [])]
    if not preset.startswith("mvsen"):  # MVSEN's widths are its model defaults (no embed_size)
        extra.append(f"model.embed_size={embed}")
    if preset == "user_f30k":
        extra += [f"model.queue_size={queue}", f"model.num_slots={regions}"]
    return load_config(preset, extra)


def batch_for(model: torch.nn.Module, batch: Batch, seed: int = 0) -> Batch:
    """``batch`` with what ``model``'s training step reads besides it: random 0/1 rows of each side input the
    model declares (MVSEN's labels) and, when it trains with positives, another caption per pair (the batch's
    captions rolled by one)."""
    gen = torch.Generator().manual_seed(seed)
    extras = {spec.name: (torch.rand(len(batch), spec.width or 1, generator=gen) < 0.1).float()
              for spec in model.side_inputs}
    positive = {}
    if model.positive_caption:
        positive = {"positive_captions": batch.captions.roll(1, 0), "positive_lengths": batch.caption_lengths.roll(1)}
    return replace(batch, extras=extras, **positive)


class _StepRunner:
    """A model and its AdamW built as the engine does (registry, ``param_groups(lr)``), and the trainer's
    ``_train_step``: losses under the trainer's autocast, weighted sum, zero_grad, backward, gradient
    clipping, optimiser step, ``after_optimizer_step``."""

    def __init__(self, config: RunConfig, feature_dim: int, device: torch.device, seed: int = 0):
        torch.manual_seed(seed)
        self.config, self.device = config, device
        self.tokenizer = build_tokenizer(config.text, Path(tempfile.gettempdir()))
        self.model = create_model(config, feature_dim, self.tokenizer).to(device)
        self.model.train()
        self.model.on_epoch_start(0)
        train = config.train
        self.optimizer = torch.optim.AdamW(self.model.param_groups(train.lr), lr=train.lr,
                                           weight_decay=train.weight_decay)
        self.amp = train.amp and device.type == "cuda"
        self.steps = 0

    def step(self, batch: Batch) -> float:
        weights = self.config.train.loss_weights
        with autocast_for(self.device, self.amp):
            losses = self.model.losses(batch)
        total = sum(weights.get(name, 1.0) * value.float() for name, value in losses.items())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.config.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip).item()
        self.optimizer.step()
        self.steps += 1
        self.model.after_optimizer_step(self.steps)
        return float(total.item())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(runner: _StepRunner, batch: Batch, steps: int, warmup: int) -> list[float]:
    """Seconds of each of ``steps`` training steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        runner.step(batch)
    samples = []
    for _ in range(steps):
        _sync(runner.device)
        start = time.perf_counter()
        runner.step(batch)
        _sync(runner.device)
        samples.append(time.perf_counter() - start)
    return samples


@contextmanager
def _bert_folder(bert_path: Path | None, bert: dict[str, int]) -> Iterator[Path]:
    if bert_path is not None:
        yield Path(bert_path)
        return
    with tempfile.TemporaryDirectory(prefix="itrlib-bench-bert-") as tmp:
        yield write_random_bert(Path(tmp) / "bert", **bert)


def train_step(device: torch.device | str = "cpu", steps: int = 5, warmup: int = 3, batch: int | None = None,
               regions: int = 36, feature_dim: int = 2048, embed: int = 1024, queue: int = 2048,
               bert: dict[str, int] | None = None, bert_path: Path | None = None,
               caption_lengths: tuple[int, int] = (8, 16), profile: dict | None = None,
               models: dict[str, tuple[str, tuple[str, ...]]] = STEP_MODELS) -> pd.DataFrame:
    """Rows per model of ``models`` (default :data:`STEP_MODELS`: every model): batch size (its preset's, the
    paper's, unless ``batch``), median, min and max seconds of one training step over ``steps`` steps after
    ``warmup``, images per second, the ratio to VSE∞'s images per second and the official code's seconds per
    step on the issue's CPU where the issue reports it (not measured here). ``bert`` overrides
    :data:`BERT_BASE` keys (tests use a tiny BERT); ``bert_path`` reuses a folder from :func:`write_random_bert`.
    ``profile`` given (a dict): filled with :func:`user_step_profile`'s table for the USER model, measured on
    the same model after the timed steps."""
    device = torch.device(device)
    bert_shape = {**BERT_BASE, **(bert or {})}
    rows = []
    with _bert_folder(bert_path, bert_shape) as folder:
        for label, (preset, overrides) in models.items():
            config = _step_config(preset, overrides, folder, regions, embed, queue, batch)
            size = config.train.batch_size
            runner = _StepRunner(config, feature_dim, device)
            data = batch_for(runner.model, synthetic_batch(size, regions, feature_dim, bert_shape["vocab"],
                                                           *caption_lengths)).to(device)
            samples = _time_steps(runner, data, steps, warmup)
            rows.append({"model": label, "model.name": runner.config.model.name, "batch": size,
                         "s/step (median)": statistics.median(samples), "s/step (min)": min(samples),
                         "s/step (max)": max(samples), "images/s": size / statistics.median(samples),
                         "official code s/step, as reported in the issue (2-core CPU)": STEP_OFFICIAL.get(preset, "–"),
                         "steps timed": len(samples)})
            if profile is not None and runner.config.model.name == "user":
                profile["table"] = user_step_profile(runner, data, steps)
            del runner
    table = pd.DataFrame(rows)
    vse = table.loc[table["model.name"] == "vse", "images/s"]
    if len(vse):
        table.insert(7, "images/s vs VSE∞", table["images/s"] / vse.iloc[0])
    return table


class _Clock:
    """Wall time spent inside named calls (forward hooks, wrapped callables), summed over a step."""

    def __init__(self, device: torch.device):
        self.device, self.totals, self._open = device, {}, {}

    def start(self, name: str) -> None:
        _sync(self.device)
        self._open[name] = time.perf_counter()

    def stop(self, name: str) -> None:
        _sync(self.device)
        self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - self._open.pop(name)

    def hook(self, module: torch.nn.Module, name: str) -> list:
        return [module.register_forward_pre_hook(lambda *_: self.start(name)),
                module.register_forward_hook(lambda *_: self.stop(name))]

    def wrap(self, fn: Callable, name: str) -> Callable:
        def timed(*args, **kwargs):
            self.start(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.stop(name)
        return timed


def user_step_profile(runner: _StepRunner, batch: Batch, steps: int = 3) -> pd.DataFrame:
    """Where a USER training step's time goes: median seconds over ``steps`` instrumented steps of query
    image / text forward (BERT alone on its own row), momentum update, key image / text forward, loss and
    enqueue, backward, gradient clipping, AdamW step. Forward hooks on the encoders and per-instance wrappers
    (the model's ``_keys``, the optimiser's ``step``, ``backward`` via the runner) time the phases; nothing
    in the model changes. ``share`` is relative to the measured step."""
    model, clock = runner.model, _Clock(runner.device)
    handles = (clock.hook(model.image_encoder, "query image forward") + clock.hook(model.text_encoder,
               "query text forward") + clock.hook(model.text_encoder.tokens.bert, "query text forward: BERT part")
               + clock.hook(model.key_image_encoder, "key image forward")
               + clock.hook(model.key_text_encoder, "key text forward"))
    original_keys, original_step = model._keys, runner.optimizer.step
    model._keys = clock.wrap(original_keys, "_keys")
    runner.optimizer.step = clock.wrap(original_step, "AdamW step")
    weights, samples = runner.config.train.loss_weights, []
    try:
        for _ in range(steps):
            clock.totals = {}
            clock.start("step")
            clock.start("losses")
            with autocast_for(runner.device, runner.amp):
                losses = model.losses(batch)
            total = sum(weights.get(name, 1.0) * value.float() for name, value in losses.items())
            clock.stop("losses")
            runner.optimizer.zero_grad(set_to_none=True)
            clock.start("backward")
            total.backward()
            clock.stop("backward")
            clock.start("clip_grad_norm_")
            torch.nn.utils.clip_grad_norm_(model.parameters(), runner.config.train.grad_clip).item()
            clock.stop("clip_grad_norm_")
            runner.optimizer.step()
            runner.steps += 1
            model.after_optimizer_step(runner.steps)
            clock.stop("step")
            t = clock.totals
            keys_forward = t["key image forward"] + t["key text forward"]
            t["momentum update"] = t.pop("_keys") - keys_forward
            t["loss + enqueue + rest of losses()"] = (t.pop("losses") - t["query image forward"]
                                                     - t["query text forward"] - keys_forward - t["momentum update"])
            step = t.pop("step")
            t["other (zero_grad, hooks)"] = step - sum(v for k, v in t.items() if "BERT" not in k)
            t["whole step"] = step
            samples.append(dict(t))
    finally:
        for handle in handles:
            handle.remove()
        del model.__dict__["_keys"], runner.optimizer.__dict__["step"]  # back to the class's methods
    order = ["query image forward", "query text forward", "query text forward: BERT part", "key image forward",
             "key text forward", "momentum update", "loss + enqueue + rest of losses()", "backward", "clip_grad_norm_",
             "AdamW step", "other (zero_grad, hooks)", "whole step"]
    medians = {k: statistics.median(s[k] for s in samples) for k in order}
    return pd.DataFrame([{"phase": k, "s (median)": v, "share of step": v / medians["whole step"]}
                         for k, v in medians.items()])


FULL_EVALUATION_PAIRS = {"F30K 1K": 1000 * 5000, "COCO 5K": 5000 * 25000}
DELTA = "max |delta|"
SCORING_TOLERANCE = 1e-4
"""Largest |batched - release-style loop| score accepted by the MVSEN scoring bench (float32 sums in another
order differ by ~1e-6 at the paper's widths; a wrong mask or node gives differences of order 0.1)."""


def _release_l2norm(x: torch.Tensor, dim: int, eps: float = 1e-8) -> torch.Tensor:
    """The release's L2 normalisation, ``x / (sqrt(sum x^2) + eps)``, as its separate element-wise passes."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


def _release_attention(source: torch.Tensor, query: torch.Tensor, scale: float, slope: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Both attention directions of one caption against a block of images, as the release computes them
    (``weighted_Features``): source (B, S, d), query (B, Q, d) -> (source attended at each query position
    (B, Q, d), query attended at each source position (B, S, d)). Each direction takes its own LeakyReLU,
    L2 norm, contiguous transpose and softmax."""
    dots = torch.bmm(source, query.transpose(1, 2))  # (B, S, Q)
    along_query = _release_l2norm(F.leaky_relu(dots, slope), dim=2)
    along_source = _release_l2norm(F.leaky_relu(dots.transpose(1, 2), slope), dim=2)
    at_query = torch.softmax(scale * along_query.transpose(1, 2).contiguous(), dim=2)  # (B, Q, S)
    at_source = torch.softmax(scale * along_source.transpose(1, 2).contiguous(), dim=2)  # (B, S, Q)
    source_at_query = torch.bmm(source.transpose(1, 2), at_query.transpose(1, 2)).transpose(1, 2)
    query_at_source = torch.bmm(query.transpose(1, 2), at_source.transpose(1, 2)).transpose(1, 2)
    return source_at_query, query_at_source


def caption_loop_scores(graph: SimilarityGraph, regions: PaddedSet, words: PaddedSet, nodes: str,
                        scale: float = 10.0, slope: float = 0.1, image_shard: int = 64) -> torch.Tensor:
    """Scores (I, C) computed the way the release evaluates (``evaluation.shard_xattn`` + ``Reason_*``),
    operation for operation, in code of its own.

    For each block of ``image_shard`` images and for each caption, one at a time: the caption cut to its
    length and copied once per image; both attention directions in full (:func:`_release_attention`), though
    one of them only feeds two means that scoring discards (computed here too); ``(attended - nodes)^2``, the
    weight-normed projection and the L2 norm; per GCN layer the query and key projections applied separately to
    every node, the edge softmax, the product and the residual; the scoring head on every node, then the mean.
    Same network and weights as :func:`~itrlib.nn.mvsen_similarity_reasoning.pairwise_scores`: its reference in
    tests (``image_shard=1``: one pair at a time) and in ``make bench``.
    """
    out = torch.empty(len(regions), len(words), dtype=torch.float32, device=regions.features.device)
    for i0 in range(0, len(regions), image_shard):
        imgs = regions.features[i0:i0 + image_shard]
        for c in range(len(words)):
            cap = words.features[c:c + 1, :int(words.lengths[c])].repeat(len(imgs), 1, 1)
            source, query = (cap, imgs) if nodes == "regions" else (imgs, cap)
            attended, other_view = _release_attention(source, query, scale, slope)
            m = _release_l2norm(graph.project((attended - query).pow(2)), dim=-1)
            for layer in graph.layers:
                edges = torch.softmax(torch.bmm(layer.query(m), layer.key(m).transpose(1, 2)), dim=-1)
                m = torch.bmm(edges, m) + m
            hidden = torch.tanh(graph.hidden(m.reshape(-1, m.shape[-1]))).view(*m.shape[:2], -1)
            out[i0:i0 + image_shard, c] = graph.score(hidden).view(len(imgs), -1).mean(dim=1)
            # the per-caption means of both attended views, which the release returns beside the scores
            _means = (attended.mean(dim=0).mean(dim=0, keepdim=True), other_view.mean(dim=0).mean(dim=0, keepdim=True))
    return out


def sgemm_rate(device: torch.device | str = "cpu", size: int = 2048, repeats: int = 5) -> float:
    """The machine's float32 matrix-product rate in GFLOP/s: the median of ``repeats`` (size x size) products."""
    device = torch.device(device)
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / time_call(lambda: a @ b, repeats, warmup=1) * 1e3 / 1e9


def mvsen_macs(n_img: int, regions: int, lengths: torch.Tensor, dim: int, sim_dim: int, hidden: int, layers: int,
               nodes: str) -> float:
    """Multiply-adds that scoring ``n_img`` images of ``regions`` regions against captions of ``lengths`` words
    needs in the batched network: the attention dots and the attended view (K x n x d each), the projection
    (N x d x d_c), per GCN layer the folded edge product (N x d_c x d_c) and the two (N x N x d_c) products, the
    hidden layer (N x d_c x h); N = K (region nodes) or n (word nodes). The release's loop does more: both
    attention views, two projections per GCN layer."""
    n = lengths.double()
    count = torch.full_like(n, regions) if nodes == "regions" else n
    gcn = layers * (count * sim_dim**2 + 2 * count**2 * sim_dim)
    per_caption = 2 * regions * n * dim + count * dim * sim_dim + gcn + count * sim_dim * hidden
    return float(n_img * per_caption.sum())


GLOBAL_CASES = {"F30K 1K": (1000, 5000), "COCO 5K": (5000, 25000)}


def global_scoring(device: torch.device | str = "cpu", dim: int = 1024, repeats: int = 3,
                   cases: dict[str, tuple[int, int]] = GLOBAL_CASES) -> pd.DataFrame:
    """One row per test size: seconds of a global model's whole score matrix as evaluation computes it
    (:func:`~itrlib.evaluation.scoring.sharded_scores` of ``inner_products_fp32`` in blocks of
    ``RetrievalModel.score_block_pairs`` pairs, float32 on the CPU), beside one plain matrix product of the
    same embeddings; the GFLOP/s of the former and its fraction of the machine's :func:`sgemm_rate`. Median
    of ``repeats`` calls (:func:`time_call`)."""
    device = torch.device(device)
    sgemm = sgemm_rate(device)
    rows = []
    for case, (n_img, n_cap) in cases.items():
        generator = torch.Generator().manual_seed(0)
        img = F.normalize(torch.randn(n_img, dim, generator=generator), dim=1).to(device)
        cap = F.normalize(torch.randn(n_cap, dim, generator=generator), dim=1).to(device)
        img_shard, cap_shard = block_shape(n_img, n_cap, RetrievalModel.score_block_pairs)
        sharded = time_call(lambda img=img, cap=cap, i=img_shard, c=cap_shard: sharded_scores(
            inner_products_fp32, img, cap, i, c), repeats, warmup=1) / 1e3
        plain = time_call(lambda img=img, cap=cap: img @ cap.T, repeats, warmup=1) / 1e3
        flops = 2 * n_img * n_cap * dim
        rows.append({"matrix": f"{case} ({n_img}x{n_cap}, d {dim})", "evaluation scoring s": sharded,
                     "one matmul s": plain, "GFLOP/s": flops / sharded / 1e9, "sgemm GFLOP/s": sgemm,
                     "fraction of sgemm": flops / sharded / 1e9 / sgemm})
    return pd.DataFrame(rows)


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
    tokens = (max(_SPECIAL_TOKENS) + 1, min(2000, bert_shape["vocab"]))  # ordinary word pieces
    timings, per_query = {}, {}
    with _bert_folder(None, bert_shape) as folder:
        for label, (preset, overrides) in EVALUATION_MODELS.items():
            config = _step_config(preset, overrides, folder, 36, 1024, 2048)
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


TWO_STAGE_SHORTLISTS = (16, 32, 64, 128)
"""Shortlist sizes M of the projected two-stage COCO 5K evaluation (:func:`mvsen_scoring`)."""
COCO5K = (5000, 25000)


def _seconds(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float]:
    fn()  # warm-up
    _sync(device)
    start = time.perf_counter()
    scores = fn()
    _sync(device)
    return scores, time.perf_counter() - start


def mvsen_scoring(device: torch.device | str = "cpu", n_img: int = 64, n_cap: int = 256, dim: int = 1024,
                  seed: int = 0, shortlists: tuple[int, ...] = TWO_STAGE_SHORTLISTS
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MVSEN's pairwise scoring, both directions, on the same random inputs and weights.

    First table, one row per direction: pairs/s of the release's loop (:func:`caption_loop_scores`) and of the
    batched :func:`block_scores`, the speed-up, the max |delta| between them (the bench fails above
    :data:`SCORING_TOLERANCE`), the useful GFLOP/s of each (:func:`mvsen_macs`) and its fraction of the
    machine's :func:`sgemm_rate`, and the projected full F30K 1K / COCO 5K scoring minutes.
    Second table, one row per direction and shortlist size M: the projected minutes of a COCO 5K evaluation
    reranking M candidates per query (5,000 image queries x M captions + 25,000 caption queries x M images,
    one (1, M) or (M, 1) block per query as ``itrlib.evaluation.two_stage.rerank`` scores them, at the rates
    measured on such blocks here), beside full scoring."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sim_dim, hidden, layers = 256, 32, 3
    graph = SimilarityGraph(dim, sim_dim, hidden, layers).to(device).eval()
    # the first n_img images and n_cap captions are the full-scoring block; two-stage blocks take up to max(M)
    n_img_all, n_cap_all = max(n_img, *shortlists), max(n_cap, *shortlists)
    all_regions = PaddedSet(torch.randn(n_img_all, 36, dim, generator=generator),
                            torch.full((n_img_all,), 36)).to(device)
    all_lengths = torch.randint(10, 21, (n_cap_all,), generator=generator)
    all_words = PaddedSet(torch.randn(n_cap_all, 20, dim, generator=generator), all_lengths).to(device)
    regions, words, lengths = all_regions[:n_img], all_words[:n_cap], all_lengths[:n_cap]
    per_pass = PASS_MB.get(device.type, PASS_MB["cuda"]) * 2**20 // (4 * NOMINAL_NODES * dim)
    sgemm = sgemm_rate(device)
    rows, projections = [], []
    for direction, nodes in DIRECTIONS.items():
        with torch.no_grad():
            loop_scores, loop_s = _seconds(partial(caption_loop_scores, graph, regions, words, nodes), device)
            batched = partial(block_scores, graph, regions, words, nodes, pairs_per_pass=per_pass)
            batched_scores, batched_s = _seconds(batched, device)
            # the blocks of a two-stage rerank: one image against M captions, one caption against M images
            query_rates = {}
            for m in shortlists:
                _, one_image = _seconds(partial(block_scores, graph, all_regions[:1], all_words[:m], nodes,
                                                pairs_per_pass=per_pass), device)
                _, one_caption = _seconds(partial(block_scores, graph, all_regions[:m], all_words[:1], nodes,
                                                  pairs_per_pass=per_pass), device)
                query_rates[m] = (m / one_image, m / one_caption)
        pairs = n_img * n_cap
        loop_rate, batched_rate = pairs / loop_s, pairs / batched_s
        flops = 2 * mvsen_macs(n_img, 36, lengths, dim, sim_dim, hidden, layers, nodes)
        label = f"{direction} ({nodes} as nodes)"
        row = {"direction": label, "release-style loop pairs/s": loop_rate, "batched pairs/s": batched_rate,
               "speed-up": batched_rate / loop_rate, DELTA: float((loop_scores - batched_scores).abs().max()),
               "batched GFLOP/s": flops / batched_s / 1e9, "loop GFLOP/s": flops / loop_s / 1e9,
               "sgemm GFLOP/s": sgemm, "batched fraction of sgemm": flops / batched_s / 1e9 / sgemm}
        for case, count in FULL_EVALUATION_PAIRS.items():
            row[f"{case} loop min"] = count / loop_rate / 60
            row[f"{case} batched min"] = count / batched_rate / 60
        if not row[DELTA] <= SCORING_TOLERANCE:
            raise RuntimeError(f"MVSEN scoring bench, {direction}: the batched scores differ from the release-style "
                               f"loop's by up to {row[DELTA]:.2e} (tolerance {SCORING_TOLERANCE:.0e})")
        rows.append(row)
        n_images, n_captions = COCO5K
        for m, (per_image_rate, per_caption_rate) in query_rates.items():
            minutes = (n_images * m / per_image_rate + n_captions * m / per_caption_rate) / 60
            projections.append({"direction": label, "shortlist M": m, "two-stage COCO 5K min": minutes,
                                "full COCO 5K min (batched)": n_images * n_captions / batched_rate / 60,
                                "full COCO 5K min (release loop)": n_images * n_captions / loop_rate / 60})
    return pd.DataFrame(rows), pd.DataFrame(projections)


def plot_two_stage(table: pd.DataFrame) -> plt.Figure:
    """The second table of :func:`mvsen_scoring`: projected COCO 5K minutes against the shortlist size M per
    direction (solid), full scoring batched (dashed) and with the release's loop (dotted); log scale."""
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for (direction, rows), color in zip(table.groupby("direction", sort=False), ("tab:blue", "tab:orange"),
                                        strict=False):
        ax.plot(rows["shortlist M"], rows["two-stage COCO 5K min"], "o-", color=color, label=f"{direction}: two-stage")
        ax.axhline(rows["full COCO 5K min (batched)"].iloc[0], color=color, ls="--",
                   label=f"{direction}: full, batched")
        ax.axhline(rows["full COCO 5K min (release loop)"].iloc[0], color=color, ls=":",
                   label=f"{direction}: full, release loop")
    ax.set(xscale="log", yscale="log", xlabel="shortlist M (candidates rescored per query)",
           ylabel="projected minutes, COCO 5K (5,000 x 25,000)",
           title="MVSEN: projected COCO 5K evaluation time of one direction model")
    shortlists = sorted(set(table["shortlist M"]))
    ax.set_xticks(shortlists, labels=[str(m) for m in shortlists])
    ax.set_xticks([], minor=True)
    ax.axhline(60, color="grey", lw=0.8)
    ax.annotate("1 hour", (shortlists[0], 60), xytext=(2, 3), textcoords="offset points", fontsize=7, color="grey")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as Markdown: 2 decimals, except differences (columns named like ``max |delta|``) in
    scientific notation, so that a difference of 1e-6 shows as 1.0e-06, not 0.00."""
    formats = tuple(".1e" if "|delta|" in str(column) else ".2f" for column in table.columns)
    return table.to_markdown(index=False, floatfmt=formats)


def _write(out: Path, name: str, header: str, table: pd.DataFrame) -> None:
    """``out/name`` (Markdown: the header, then the table) and the same rows as JSON beside it (``.json``)."""
    text = f"{header}\n\n{markdown_table(table)}\n"
    print(text)
    atomic_write_text(out / name, text)
    atomic_write_text((out / name).with_suffix(".json"),
                      json.dumps({"setting": header, "rows": table.to_dict(orient="records")}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", choices=("afa", "ranking", "train_step", "global_scoring", "evaluation_time",
                                                 "mvsen_scoring"),
                        help="run one benchmark (default: all)")
    parser.add_argument("--steps", type=int, default=5, help="train_step: timed training steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="train_step: untimed warm-up steps per model")
    args = parser.parse_args(argv)
    device, out, threads = torch.device(args.device), Path(args.out), torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.only in (None, "afa"):
        _write(out, "afa_enhancement.md", f"AFA enhancement cost, batch 128, embed 1024, device {device}, "
               f"torch threads {threads}", afa_enhancement(device, repeats=args.repeats))
    if args.only in (None, "ranking"):
        _write(out, "ranking.md", f"Ranking (retrieval_metrics) vs official-style per-query argsort, float32, "
               f"tie-free; CPU threads: torch {threads}, numba kernel {_lanes(5000)}, {cores} cores usable; "
               f"ours = median of {args.repeats} calls (torch backend on CPU: {max(3, args.repeats // 5)})",
               ranking_speed(args.repeats, cuda=device.type == "cuda"))
    if args.only in (None, "train_step"):
        profile: dict = {}
        table = train_step(device, steps=args.steps, warmup=args.warmup, profile=profile)
        _write(out, "train_step.md", f"One training step (losses + backward + gradient clipping + the optimiser, as "
               f"the trainer's step) of every model at the paper's sizes and its preset's batch: 36 regions x "
               f"2048-d, a random-weight BERT-base, embed 1024 (MVSEN: its paper widths), captions 8-16 tokens, "
               f"USER queue 2048; device {device}, torch threads {threads}, {cores} cores usable; median of "
               f"{args.steps} steps after {args.warmup} warm-up steps. The official-code column is the issue's "
               f"report on its 2-core CPU, not a measurement of ours; timings on a shared machine are noisy.", table)
        _write(out, "user_step_profile.md", f"USER training step by phase (same dimensions; device {device}, torch "
               f"threads {threads}); median of {args.steps} instrumented steps; 'BERT part' is part of the "
               f"query text forward and is not counted again in the whole step.", profile["table"])
    if args.only in (None, "global_scoring"):
        _write(out, "global_scoring.md", f"A global model's score matrix at the test sizes (random unit embeddings, "
               f"float32, device {device}, torch threads {threads}, {cores} cores usable): evaluation's block-sharded "
               "scoring beside one plain matrix product; median of 3 calls; fraction of the float32 matrix-product "
               "rate measured in the same run.", global_scoring(device))
    if args.only in (None, "evaluation_time"):
        _write(out, "evaluation_time.md", f"Projected evaluation seconds (encode every image and caption, score, rank "
               f"both directions) against the gallery size, at the paper's widths with a random-weight BERT-base "
               f"(36 regions x 2048-d, captions 8-16 tokens), device {device}, torch threads {threads}, {cores} cores "
               "usable. Rates measured in this run on 100 images x 500 captions (encoding and full scoring), on the "
               "F30K 1K and COCO 5K matrices (ranking; 25K scaled from 5K) and on the (1, 64) and (64, 1) blocks a "
               "two-stage rerank scores; two-stage = VSE∞'s whole evaluation + each direction model's encoding and "
               "rerank. The MVSEN ensemble is both directions' full scoring.", evaluation_time(device))
    if args.only in (None, "mvsen_scoring"):
        scoring, two_stage = mvsen_scoring(device)
        setting = (f"MVSEN pairwise scoring at the paper's widths (64 images x 256 captions of 10-20 words, d 1024, "
                   f"d_c 256, 3 GCN layers, random weights), float32, device {device}, torch threads {threads}, "
                   f"{cores} cores usable; one timed call each after a warm-up")
        _write(out, "mvsen_scoring.md", f"{setting}; the loop does the release's operations in shard_xattn's order "
               "(64-image blocks, one caption at a time). GFLOP/s count the batched network's multiply-adds "
               "(itrlib.suite.bench.mvsen_macs) for both. Projected minutes = the pairs of a full evaluation (one "
               "direction) / the measured rate.", scoring)
        _write(out, "mvsen_two_stage.md", f"{setting}. Projected minutes of a COCO 5K evaluation (5,000 x 25,000) "
               "of one MVSEN direction model: two-stage (M candidates per query from a global model, rescored one "
               "query at a time at the rate measured on (1, M) and (M, 1) blocks; the global model's own scoring, "
               "a 5,000 x 25,000 matrix product, is not included) beside full scoring.", two_stage)
        figure = plot_two_stage(two_stage)
        save_figure(figure, out / "mvsen_two_stage.png")
        plt.close(figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
