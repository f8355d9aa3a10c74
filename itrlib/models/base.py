"""The contract between a model, the training engine and evaluation.

The engine calls ``losses(batch)`` (a dict of named scalars it sums with the configured weights),
``param_groups(lr)`` to build the optimiser, and the hooks ``on_epoch_start(epoch)`` and
``after_optimizer_step(step)`` at fixed points (warm-up switches, momentum updates, queue pushes).
Evaluation calls ``encode_images`` / ``encode_captions`` batch by batch with the same side inputs training
sees (``extras``), concatenates the results with ``concat_embeddings`` and asks ``score(img_block,
cap_block)`` for float32 (N_img, N_cap) blocks of at most ``score_block_pairs`` pairs. A global model
returns (N, D) tensors and scores with a matmul; a local-matching model returns any object that supports
``len()``, slicing ``[a:b]``, ``.to(device)`` and a ``cat(list)`` classmethod, and scores pairwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from itrlib.config import check_bounds
from itrlib.data.collate import Batch
from itrlib.data.side_inputs import SideInput
from itrlib.nn.distributed import gather_batch
from itrlib.nn.functional import inner_products_fp32

Extras = dict[str, torch.Tensor]
"""Side-input rows of a batch by name (``SideInput.name``), each (B, ...)."""


class RetrievalModel(nn.Module):
    """Base class of every model in the suite."""

    side_inputs: ClassVar[tuple[SideInput, ...]] = ()
    """Side files the model needs (``{split}_{name}.npy`` or ``.txt``, per image or per caption); the data
    layer loads them for training and evaluation alike and delivers them as ``extras``."""

    positive_caption: str | None = None
    """Whether each training pair also brings another caption of its image (``Batch.positive_captions``):
    ``None``, ``"random"`` (redrawn each epoch) or ``"next"`` (MVSEN's text-text matching task)."""

    score_block_pairs: int = 1 << 25
    """Pairs per score block at evaluation (memory budget; ``eval.max_pairs_per_block`` overrides it).
    A global model's block is a float32 matrix (2^25 pairs = 128 MiB); a pairwise model sets it lower."""

    def encode_images(self, images: torch.Tensor, lengths: torch.Tensor, extras: Extras | None = None) -> Any:
        """images (B, K, D_img), lengths (B,), per-image side inputs -> image embeddings for B images."""
        raise NotImplementedError

    def encode_captions(self, captions: torch.Tensor, lengths: torch.Tensor, extras: Extras | None = None) -> Any:
        """token ids (B, L), lengths (B,), per-caption side inputs -> caption embeddings for B captions."""
        raise NotImplementedError

    def score(self, img_emb: Any, cap_emb: Any) -> torch.Tensor:
        """float32 similarities (N_img, N_cap) between two blocks of embeddings, also under autocast."""
        raise NotImplementedError

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Named scalar training losses for one batch of aligned pairs. Under torch.distributed ``batch`` is
        this rank's share of the global batch and the losses are those of the global batch
        (:mod:`itrlib.nn.distributed`)."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """:meth:`losses`: what ``DistributedDataParallel`` calls (it prepares the gradient all-reduce there)."""
        return self.losses(batch)

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser parameter groups with their learning rates (default: one group)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def on_epoch_start(self, epoch: int) -> None:
        """Called before the first step of every epoch (also when a run resumes mid-epoch)."""

    def after_optimizer_step(self, step: int) -> None:
        """Called after every optimiser step with the global step count (1-based)."""


class GlobalEmbeddingModel(RetrievalModel):
    """One unit vector per image and per caption, scored by float32 inner products (VSE∞, AFA).

    Holds what such models share: the score, the embeddings of a training batch, and the VSE++ schedule
    (:class:`HardestNegativeSchedule`: sum over negatives for ``mean_warmup_epochs`` epochs, then the hardest
    negative when ``max_violation``; a model with another loss has no schedule).
    """

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.hardest = hardest_negatives(config, epoch=0)

    def score(self, img_emb: torch.Tensor, cap_emb: torch.Tensor) -> torch.Tensor:
        """(n_i, E), (n_c, E) -> (n_i, n_c) float32."""
        return inner_products_fp32(img_emb, cap_emb)

    def batch_embeddings(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, E) image and (B, E) caption embeddings of a batch of aligned pairs: of the global batch, in
        rank order, under torch.distributed (:func:`~itrlib.nn.distributed.gather_batch`)."""
        return (gather_batch(self.encode_images(batch.images, batch.image_lengths, batch.extras)),
                gather_batch(self.encode_captions(batch.captions, batch.caption_lengths, batch.extras)))

    def on_epoch_start(self, epoch: int) -> None:
        self.hardest = hardest_negatives(self.config, epoch)


@dataclass
class HardestNegativeSchedule:
    """The hinge-triplet fields of VSE∞ and AFA: margin and the VSE++ schedule (defaults: the official
    VSE∞ ``train_region.sh``)."""

    margin: float = 0.2
    """Margin of the hinge (VSE∞'s margin; AFA's alpha1, of the real-pair terms)."""
    max_violation: bool = True
    """Hardest negatives (VSE++) after the warm-up; ``false`` keeps the sum over all negatives."""
    mean_warmup_epochs: int = 1
    """Epochs trained with the sum over all negatives before hardest negatives (``train_region.sh``: 1)."""

    def validate_schedule(self) -> None:
        check_bounds("model", self, ("margin", "mean_warmup_epochs"), 0)


def hardest_negatives(config: Any, epoch: int) -> bool:
    """VSE++ schedule: hardest negatives from epoch ``mean_warmup_epochs`` on, if ``max_violation``
    (``False`` for a model config without the schedule, e.g. USER's UTO loss)."""
    if not isinstance(config, HardestNegativeSchedule):
        return False
    return config.max_violation and epoch >= config.mean_warmup_epochs


def concat_embeddings(chunks: list[Any]) -> Any:
    """Concatenate per-batch embeddings along the item axis (tensors or a type with ``cat``)."""
    if not chunks:
        raise ValueError("no embeddings to concatenate")
    if isinstance(chunks[0], torch.Tensor):
        return torch.cat(chunks, dim=0)
    return type(chunks[0]).cat(chunks)


def encoder_param_groups(lr: float, bert_lr_factor: float, text_encoder: nn.Module,
                         text_modules: list[nn.Module], image_modules: list[nn.Module]) -> list[dict]:
    """VSE∞'s optimiser groups: text (non-pretrained) at lr, the pretrained text encoder at
    lr * bert_lr_factor, image side at lr. Empty groups (e.g. a BiGRU has no pretrained part) are dropped."""
    pretrained = {id(p) for p in text_encoder.pretrained_parameters()}
    text = [p for p in text_encoder.parameters() if id(p) not in pretrained]
    groups = [
        {"name": "text", "lr": lr, "params": text + [p for m in text_modules for p in m.parameters()]},
        {"name": "bert", "lr": lr * bert_lr_factor,
         "params": [p for p in text_encoder.parameters() if id(p) in pretrained]},
        {"name": "image", "lr": lr, "params": [p for m in image_modules for p in m.parameters()]},
    ]
    return [g for g in groups if g["params"]]

