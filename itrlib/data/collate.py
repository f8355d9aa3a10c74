"""Batch containers and collate functions (zero-padding of regions, pad-id padding of token ids)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple, Self

import numpy as np
import torch
import torch.nn.functional as F


class PairItem(NamedTuple):
    """One training/eval pair: image (k, D) float32 regions, caption token ids, indices, side-input rows
    (of the pair's image and of its caption, by side-input name)."""

    image: np.ndarray
    tokens: list[int]
    image_index: int
    caption_index: int
    extras: dict[str, np.ndarray]
    positive_tokens: list[int] | None = None
    """Token ids of another caption of the same image (MVSEN's T+), when the model asks for one."""


class ImageItem(NamedTuple):
    image: np.ndarray  # (K, D) float32
    image_index: int
    extras: dict[str, np.ndarray]


class CaptionItem(NamedTuple):
    tokens: list[int]
    caption_index: int
    extras: dict[str, np.ndarray]


def _apply(batch: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """A copy of a batch dataclass with ``fn`` applied to every tensor (and every tensor in a dict field)."""
    changes = {}
    for f in fields(batch):
        value = getattr(batch, f.name)
        if isinstance(value, torch.Tensor):
            changes[f.name] = fn(value)
        elif isinstance(value, dict):
            changes[f.name] = {k: fn(v) for k, v in value.items()}
    return replace(batch, **changes)


class _Movable:
    def to(self, device: torch.device | str, non_blocking: bool = False) -> Self:
        """The same batch with every tensor on ``device``."""
        return _apply(self, lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Self:
        """Used by ``DataLoader(pin_memory=True)``."""
        return _apply(self, lambda t: t.pin_memory())


@dataclass
class Batch(_Movable):
    """B aligned (image, caption) pairs."""

    images: torch.Tensor  # (B, K, D) float32, zero-padded after image_lengths
    image_lengths: torch.Tensor  # (B,) int64
    captions: torch.Tensor  # (B, L) int64 token ids, padded with pad_id
    caption_lengths: torch.Tensor  # (B,) int64, special tokens included
    image_index: torch.Tensor  # (B,) int64 image index within the split
    caption_index: torch.Tensor  # (B,) int64 caption index within the split
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (B, ...) side-input rows
    positive_captions: torch.Tensor | None = None  # (B, L+) another caption of each pair's image, or None
    positive_lengths: torch.Tensor | None = None  # (B,) int64

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def widths(self) -> tuple[int, int, int]:
        """(regions K, caption tokens L, positive-caption tokens L+ or 0): the padded widths."""
        positive = 0 if self.positive_captions is None else int(self.positive_captions.shape[1])
        return int(self.images.shape[1]), int(self.captions.shape[1]), positive

    def padded_to(self, widths: tuple[int, int, int], pad_id: int) -> Batch:
        """The same pairs padded to ``widths`` (each at least :meth:`widths`): zero regions, ``pad_id`` tokens.

        Under torch.distributed every rank pads its share of a batch to the widest of all ranks, so that
        each rank's padding is the one the whole batch has in one process (MVSEN's official-padding path
        reads padded positions)."""
        regions, tokens, positive = widths
        changes = {"images": F.pad(self.images, (0, 0, 0, regions - self.images.shape[1])),
                   "captions": F.pad(self.captions, (0, tokens - self.captions.shape[1]), value=pad_id)}
        if self.positive_captions is not None:
            changes["positive_captions"] = F.pad(self.positive_captions,
                                                 (0, positive - self.positive_captions.shape[1]), value=pad_id)
        return replace(self, **changes)


@dataclass
class ImageBatch(_Movable):
    """B images for evaluation."""

    images: torch.Tensor  # (B, K, D) float32, zero-padded after image_lengths
    image_lengths: torch.Tensor  # (B,) int64
    image_index: torch.Tensor  # (B,) int64
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (B, ...) per-image side data

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class CaptionBatch(_Movable):
    """B captions for evaluation."""

    captions: torch.Tensor  # (B, L) int64, padded with pad_id
    caption_lengths: torch.Tensor  # (B,) int64, special tokens included
    caption_index: torch.Tensor  # (B,) int64
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (B, ...) per-caption side data

    def __len__(self) -> int:
        return int(self.captions.shape[0])


def pad_sequences(seqs: Sequence[Sequence[int]] | Sequence[np.ndarray], pad_id: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """B id sequences -> (padded (B, L_max) int64 filled with pad_id, lengths (B,) int64)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    padded = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), pad_id, dtype=torch.int64)
    view = padded.numpy()  # shares memory with ``padded``
    for row, seq in enumerate(seqs):
        view[row, : len(seq)] = seq
    return padded, lengths


def pad_regions(images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """B region arrays (k_i, D) -> (zero-padded (B, max k_i, D) float32, lengths (B,) int64)."""
    lengths = torch.tensor([len(x) for x in images], dtype=torch.int64)
    dim = images[0].shape[-1]
    out = torch.zeros(len(images), int(lengths.max()), dim, dtype=torch.float32)
    view = out.numpy()  # shares memory with ``out``; also accepts read-only memory-mapped rows
    for row, image in enumerate(images):
        view[row, : len(image)] = image
    return out, lengths


def _stack_extras(per_item: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.stack([item[name] for item in per_item])) for name in per_item[0]}


def _indices(values: Sequence[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def collate_pairs(items: Sequence[PairItem], pad_id: int) -> Batch:
    images, image_lengths = pad_regions([it.image for it in items])
    captions, caption_lengths = pad_sequences([it.tokens for it in items], pad_id)
    positives = positive_lengths = None
    if items[0].positive_tokens is not None:
        positives, positive_lengths = pad_sequences([it.positive_tokens for it in items], pad_id)
    return Batch(images=images, image_lengths=image_lengths, captions=captions,
                 caption_lengths=caption_lengths,
                 image_index=_indices([it.image_index for it in items]),
                 caption_index=_indices([it.caption_index for it in items]),
                 extras=_stack_extras([it.extras for it in items]),
                 positive_captions=positives, positive_lengths=positive_lengths)


def collate_images(items: Sequence[ImageItem]) -> ImageBatch:
    images, image_lengths = pad_regions([it.image for it in items])
    return ImageBatch(images=images, image_lengths=image_lengths,
                      image_index=_indices([it.image_index for it in items]),
                      extras=_stack_extras([it.extras for it in items]))


def collate_captions(items: Sequence[CaptionItem], pad_id: int) -> CaptionBatch:
    captions, caption_lengths = pad_sequences([it.tokens for it in items], pad_id)
    return CaptionBatch(captions=captions, caption_lengths=caption_lengths,
                        caption_index=_indices([it.caption_index for it in items]),
                        extras=_stack_extras([it.extras for it in items]))
