"""Padded sets of vectors (regions of images, words of captions) with their lengths.

The embeddings a local-matching model (MVSEN) hands to evaluation: ``len()``, slicing along the item axis,
``.to(device)`` and ``cat`` are what :func:`itrlib.evaluation.scoring.sharded_scores` and
:func:`itrlib.models.base.concat_embeddings` need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch

from itrlib.nn.functional import length_mask


@dataclass(frozen=True)
class PaddedSet:
    """``features`` (N, L, D), ``lengths`` (N,) int64: item ``i`` holds ``features[i, :lengths[i]]``; the
    padded positions hold arbitrary values and are never read as data (masks come from ``lengths``)."""

    features: torch.Tensor
    lengths: torch.Tensor

    def __post_init__(self) -> None:
        if self.features.dim() != 3 or self.lengths.shape != self.features.shape[:1]:
            raise ValueError(f"PaddedSet: features (N, L, D) and lengths (N,) expected; got "
                             f"{tuple(self.features.shape)} and {tuple(self.lengths.shape)}")

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def __getitem__(self, index: slice | torch.Tensor) -> PaddedSet:
        """Items ``a:b``, or the items of a 1-D index tensor in its order (two-stage retrieval's shortlists)."""
        if not (isinstance(index, slice) or (isinstance(index, torch.Tensor) and index.dim() == 1)):
            raise TypeError("PaddedSet supports slices x[a:b] and 1-D index tensors only")
        return PaddedSet(self.features[index], self.lengths[index])

    def to(self, device: torch.device | str) -> Self:
        return PaddedSet(self.features.to(device), self.lengths.to(device))

    def mask(self) -> torch.Tensor:
        """(N, L) bool, True at valid positions."""
        return length_mask(self.lengths, self.features.shape[1])

    def trimmed(self) -> PaddedSet:
        """The same items with the padding cut to the longest item."""
        longest = int(self.lengths.max()) if len(self) else 0
        return PaddedSet(self.features[:, :longest], self.lengths)

    @classmethod
    def cat(cls, parts: list[PaddedSet]) -> PaddedSet:
        """Concatenate along the item axis, padding with zeros to the longest part."""
        width = max(p.features.shape[1] for p in parts)
        feats = [torch.nn.functional.pad(p.features, (0, 0, 0, width - p.features.shape[1])) for p in parts]
        return cls(torch.cat(feats), torch.cat([p.lengths for p in parts]))
