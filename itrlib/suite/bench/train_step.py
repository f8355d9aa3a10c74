"""``train_step``: one full training step of every model at the paper's sizes and its preset's batch, with a
random-weight BERT-base-shaped text encoder written to a temporary folder (nothing downloaded), and each
step's profile by part."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from itrlib.config import RunConfig, load_config
from itrlib.data.collate import Batch
from itrlib.engine.components import build_tokenizer, create_model, create_optimizer
from itrlib.evaluation.encode import autocast_for
from itrlib.suite.bench.timing import synchronize

STEP_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "VSE∞": ("vse_f30k", ()), "AFA": ("afa_f30k", ()), "USER (SGE, DVQ+DTQ)": ("user_f30k", ()),
    "MVSEN t2i": ("mvsen_f30k", ("model.direction=t2i",)), "MVSEN i2t": ("mvsen_f30k", ("model.direction=i2t",))}
"""Row label -> (packaged preset, overrides) of the model whose training step :func:`train_step` times."""


STEP_OFFICIAL = {"user_f30k": "12.8-13.3", "vse_f30k": "7.5-8.2"}
"""Seconds per step of the official code on the issue's 2-core CPU, as reported in the issue (not measured)."""


BERT_BASE = {"hidden": 768, "layers": 12, "heads": 12, "intermediate": 3072, "vocab": 30522}
"""``transformers.BertConfig()`` defaults (BERT-base shape)."""


SPECIAL_TOKENS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}  # bert-base-uncased ids


def write_random_bert(folder: Path, hidden: int = 768, layers: int = 12, heads: int = 12, intermediate: int = 3072,
                      vocab: int = 30522, seed: int = 0) -> Path:
    """Save a randomly initialised ``BertModel`` (BERT-base by default) and a placeholder WordPiece
    ``vocab.txt`` (bert-base-uncased special-token ids) into ``folder``: a ``text.bert_path`` for benchmarks
    that need the shape of BERT, not its weights. Nothing is downloaded."""
    from transformers import BertConfig, BertModel

    if vocab <= max(SPECIAL_TOKENS):
        raise ValueError(f"vocab must exceed {max(SPECIAL_TOKENS)} (special-token ids), got {vocab}")
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
    words = [SPECIAL_TOKENS.get(i, f"[unused{i}]" if i < 100 else f"tok{i}") for i in range(vocab)]
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
    ids = torch.randint(max(SPECIAL_TOKENS) + 1, vocab, (batch, int(lengths.max())), generator=gen)
    ids[:, 0] = 101
    ids[torch.arange(batch), lengths - 1] = 102
    ids[torch.arange(ids.shape[1]) >= lengths[:, None]] = 0
    return Batch(images=torch.randn(batch, regions, feature_dim, generator=gen).relu_(),
                 image_lengths=torch.full((batch,), regions), captions=ids, caption_lengths=lengths,
                 image_index=torch.arange(batch), caption_index=torch.arange(batch))


def step_config(preset: str, overrides: tuple[str, ...], bert_path: Path, regions: int, embed: int, queue: int,
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


class StepRunner:
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
        self.optimizer = create_optimizer(self.model, config.train)
        self.amp = config.train.amp and device.type == "cuda"
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


def _time_steps(runner: StepRunner, batch: Batch, steps: int, warmup: int) -> list[float]:
    """Seconds of each of ``steps`` training steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        runner.step(batch)
    samples = []
    for _ in range(steps):
        synchronize(runner.device)
        start = time.perf_counter()
        runner.step(batch)
        synchronize(runner.device)
        samples.append(time.perf_counter() - start)
    return samples


@contextmanager
def bert_folder(bert_path: Path | None, bert: dict[str, int]) -> Iterator[Path]:
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
    ``profile`` given (a dict): ``profile[label]`` gets :func:`step_profile`'s table of each model, measured on
    the same model after the timed steps."""
    device = torch.device(device)
    bert_shape = {**BERT_BASE, **(bert or {})}
    rows = []
    with bert_folder(bert_path, bert_shape) as folder:
        for label, (preset, overrides) in models.items():
            config = step_config(preset, overrides, folder, regions, embed, queue, batch)
            size = config.train.batch_size
            runner = StepRunner(config, feature_dim, device)
            data = batch_for(runner.model, synthetic_batch(size, regions, feature_dim, bert_shape["vocab"],
                                                           *caption_lengths)).to(device)
            samples = _time_steps(runner, data, steps, warmup)
            rows.append({"model": label, "model.name": runner.config.model.name, "batch": size,
                         "s/step (median)": statistics.median(samples), "s/step (min)": min(samples),
                         "s/step (max)": max(samples), "images/s": size / statistics.median(samples),
                         "official code s/step, as reported in the issue (2-core CPU)": STEP_OFFICIAL.get(preset, "–"),
                         "steps timed": len(samples)})
            if profile is not None:
                profile[label] = step_profile(runner, data, steps)
            del runner
    table = pd.DataFrame(rows)
    vse = table.loc[table["model.name"] == "vse", "images/s"]
    if len(vse):
        table.insert(7, "images/s vs VSE∞", table["images/s"] / vse.iloc[0])
    return table


class _Clock:
    """Wall time spent inside named calls, summed over a step. Module hooks time only the outermost hooked
    module running (a hooked module called inside another is part of the outer one's time), so the parts add up."""

    def __init__(self, device: torch.device):
        self.device, self.totals, self._open, self._depth = device, {}, {}, 0

    def start(self, name: str) -> None:
        synchronize(self.device)
        self._open[name] = time.perf_counter()

    def stop(self, name: str) -> None:
        synchronize(self.device)
        self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - self._open.pop(name)

    def _enter(self, name: str) -> None:
        self._depth += 1
        if self._depth == 1:
            self.start(name)

    def _leave(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.stop(name)

    def hook(self, module: torch.nn.Module, name: str) -> list:
        """Time ``module``'s forward calls under ``name``."""
        return [module.register_forward_pre_hook(lambda *_: self._enter(name)),
                module.register_forward_hook(lambda *_: self._leave(name))]

    def hook_span(self, first: torch.nn.Module, last: torch.nn.Module, name: str) -> list:
        """Time from the start of ``first``'s forward to the end of ``last``'s under ``name``: a part of an outer
        hooked module, on its own clock (its row is not counted again in the step)."""
        return [first.register_forward_pre_hook(lambda *_: self.start(name)),
                last.register_forward_hook(lambda *_: self.stop(name))]


BERT_PART = ": BERT part"
"""Suffix of a profile row that is part of the row before it (not counted again in the whole step)."""


def _bert_span(bert: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The first and the last module a BERT forward runs, padded or packed (:mod:`itrlib.nn.packed_bert` calls
    the submodules, not ``bert`` itself): its embeddings and its last layer's output LayerNorm (the pooler,
    which the models never read, is left out); ``bert`` itself for another architecture."""
    try:
        return bert.embeddings, bert.encoder.layer[-1].output.LayerNorm
    except AttributeError:
        return bert, bert


def step_profile(runner: StepRunner, batch: Batch, steps: int = 3) -> pd.DataFrame:
    """Where one training step's time goes, for any model: median seconds over ``steps`` instrumented steps
    of each of the model's direct submodules' forward calls (``forward: <name>``; for one holding a BERT, its
    BERT part on the next row), the rest of ``losses()`` (the loss itself; USER: also the momentum update and
    the enqueue), backward, gradient clipping, the AdamW step, ``after_optimizer_step`` and the rest
    (zero_grad, hooks). Forward hooks time the parts; nothing in the model changes. ``share`` is relative to
    the measured step."""
    model, clock = runner.model, _Clock(runner.device)
    children = [(name, module) for name, module in model.named_children()]
    handles = []
    for name, module in children:
        handles += clock.hook(module, f"forward: {name}")
        bert = next((m for n, m in module.named_modules() if n.split(".")[-1] == "bert"), None)
        if bert is not None:
            handles += clock.hook_span(*_bert_span(bert), f"forward: {name}{BERT_PART}")
    weights, samples = runner.config.train.loss_weights, []
    try:
        for _ in range(steps):
            clock.totals = {}
            clock.start("whole step")
            clock.start("losses")
            with autocast_for(runner.device, runner.amp):
                losses = model.losses(batch)
            total = sum(weights.get(name, 1.0) * value.float() for name, value in losses.items())
            clock.stop("losses")
            runner.optimizer.zero_grad(set_to_none=True)
            for name, call in (("backward", total.backward),
                               ("clip_grad_norm_", lambda: torch.nn.utils.clip_grad_norm_(
                                   model.parameters(), runner.config.train.grad_clip).item()),
                               ("AdamW step", runner.optimizer.step),
                               ("after_optimizer_step", lambda: model.after_optimizer_step(runner.steps + 1))):
                clock.start(name)
                call()
                clock.stop(name)
            runner.steps += 1
            clock.stop("whole step")
            t = clock.totals
            forwards = sum(v for k, v in t.items() if k.startswith("forward: ") and not k.endswith(BERT_PART))
            t["rest of losses() (the loss; USER: momentum update, enqueue)"] = t.pop("losses") - forwards
            parts = sum(v for k, v in t.items() if k != "whole step" and not k.endswith(BERT_PART))
            t["other (zero_grad, hooks)"] = t["whole step"] - parts
            samples.append(dict(t))
    finally:
        for handle in handles:
            handle.remove()
    order = [k for name, _ in children for k in (f"forward: {name}", f"forward: {name}{BERT_PART}")
             if any(k in s for s in samples)]
    order += ["rest of losses() (the loss; USER: momentum update, enqueue)", "backward", "clip_grad_norm_",
              "AdamW step", "after_optimizer_step", "other (zero_grad, hooks)", "whole step"]
    medians = {k: statistics.median(s.get(k, 0.0) for s in samples) for k in order}
    return pd.DataFrame([{"part": k, "s (median)": v, "share of step": v / medians["whole step"]}
                         for k, v in medians.items()])
