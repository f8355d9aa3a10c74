"""Map-style datasets over a :class:`PrecompSplit`: aligned pairs (training/validation), images, captions.

Randomness of a training item depends only on (seed, epoch, item index): item ``c`` of epoch ``e`` draws
from ``np.random.default_rng([seed, e, c])``, so batches do not depend on the number of DataLoader workers
or on the order in which items are fetched, and a resumed run sees exactly the same items.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from torch.utils.data import Dataset

from itrlib.data.collate import (
    CaptionItem,
    ImageItem,
    PairItem,
    collate_captions,
    collate_images,
    collate_pairs,
)
from itrlib.data.precomp import PrecompSplit
from itrlib.data.text import Tokenizer
from itrlib.errors import ConfigError, DataError

POSITIVE_RULES = (None, "random", "next")


def _check_extras(split: PrecompSplit, extras: dict[str, np.ndarray] | None, per: str = "image"
                  ) -> dict[str, np.ndarray]:
    extras = dict(extras or {})
    rows = split.n_images if per == "image" else split.n_captions
    for name, array in extras.items():
        if array.ndim < 1 or array.shape[0] != rows:
            raise DataError(f"side array {name!r} of split {split.split!r} in {split.root}: shape "
                            f"{array.shape}, expected one row per {per} ({rows})")
    return extras


def _extras_rows(split: PrecompSplit, extras: dict[str, np.ndarray], index: int, per: str = "image"
                 ) -> dict[str, np.ndarray]:
    """Row ``index`` of every side array, checked to be finite when it is floating point."""
    rows = {}
    for name, array in extras.items():
        row = np.array(array[index])
        if np.issubdtype(row.dtype, np.floating) and not np.isfinite(row).all():
            raise DataError(f"side array {name!r} of split {split.split!r} in {split.root}: {per} {index} "
                            "has non-finite values (NaN or inf)")
        rows[name] = row
    return rows


def _pair_extras(dataset: PairDataset, image_index: int, caption_index: int) -> dict[str, np.ndarray]:
    return {**_extras_rows(dataset.split, dataset.extras, image_index),
            **_extras_rows(dataset.split, dataset.caption_extras, caption_index, "caption")}


def _load_image(split: PrecompSplit, index: int) -> np.ndarray:
    """Image ``index`` as a (K, D) float32 copy, checked to be finite."""
    image = np.array(split.images[index])
    if not np.isfinite(image).all():
        raise DataError(f"{split.images_path}: image {index} has non-finite features (NaN or inf)")
    return image


class PairDataset(Dataset):
    """One item per caption ``c``, paired with image ``c // caps_per_image``.

    train=True reproduces VSE∞'s ``PrecompRegionDataset`` augmentation: every region is kept
    independently when its uniform draw is > 1 - region_keep_prob (VSE∞: > 0.2), the kept regions stay in
    their original order at the front (we keep all regions if none survives, where VSE∞ would yield an
    empty image), and the caption is augmented by ``tokenizer.encode(caption, rng)`` when
    ``caption_augment``. train=False: all regions, no augmentation. ``extras`` are per-image arrays
    (N_img, ...), ``caption_extras`` per-caption arrays (N_cap, ...); both are delivered in ``Batch.extras``
    (one row per pair).

    ``positive`` adds another caption of the same image to every item (MVSEN's T+, unaugmented):
    ``random`` draws one of the image's other captions uniformly, anew each epoch (from its own
    ``default_rng([seed, epoch, index, 1])``, so the other draws do not shift); ``next`` always takes
    caption ``(c + 1) mod caps_per_image`` of the image (a fixed choice, like the release's precomputed file).
    """

    def __init__(self, split: PrecompSplit, tokenizer: Tokenizer, *, train: bool,
                 region_keep_prob: float = 0.8, caption_augment: bool = True, seed: int = 0,
                 extras: dict[str, np.ndarray] | None = None,
                 caption_extras: dict[str, np.ndarray] | None = None, positive: str | None = None):
        if not 0.0 < region_keep_prob <= 1.0:
            raise ConfigError(f"region_keep_prob={region_keep_prob!r}: expected a probability in (0, 1]")
        self.split = split
        self.tokenizer = tokenizer
        self.train = train
        self.region_keep_prob = region_keep_prob
        self.caption_augment = caption_augment
        self.seed = seed
        self.epoch = 0
        self.extras = _check_extras(split, extras)
        self.caption_extras = _check_extras(split, caption_extras, "caption")
        if positive not in POSITIVE_RULES:
            raise ConfigError(f"positive={positive!r}: expected one of {POSITIVE_RULES}")
        if positive is not None and split.caps_per_image < 2:
            raise DataError(f"split {split.split!r} in {split.root} has {split.caps_per_image} caption per image: "
                            "a positive caption needs at least 2")
        self.positive = positive
        self.collate_fn = partial(collate_pairs, pad_id=tokenizer.pad_id)

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch`` (call before creating the epoch's DataLoader iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.split.n_captions

    def __getitem__(self, index: int) -> PairItem:
        if not 0 <= index < len(self):
            raise IndexError(f"caption index {index} out of range for {len(self)} captions")
        image_index = index // self.split.caps_per_image
        image = _load_image(self.split, image_index)
        caption = self.split.captions[index]
        positive = self._positive_tokens(index)
        if not self.train:
            return PairItem(image, self.tokenizer.encode(caption), image_index, index,
                            _pair_extras(self, image_index, index), positive)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        draws = rng.random(image.shape[0])  # drawn even at keep prob 1 so the caption draws do not shift
        if self.region_keep_prob < 1.0:
            keep = draws > 1.0 - self.region_keep_prob
            if keep.any():
                image = image[keep]
        tokens = self.tokenizer.encode(caption, rng if self.caption_augment else None)
        return PairItem(image, tokens, image_index, index, _pair_extras(self, image_index, index), positive)

    def _positive_tokens(self, index: int) -> list[int] | None:
        """Token ids of the positive caption of caption ``index`` (None without ``positive``)."""
        if self.positive is None:
            return None
        per = self.split.caps_per_image
        first, offset = index - index % per, index % per
        if self.positive == "next":
            other = (offset + 1) % per
        else:
            draw = int(np.random.default_rng([self.seed, self.epoch, index, 1]).integers(per - 1))
            other = draw + (draw >= offset)  # uniform over the image's other captions
        return self.tokenizer.encode(self.split.captions[first + other])


class ImageDataset(Dataset):
    """One item per image (evaluation): all K regions, plus optional per-image ``extras``."""

    def __init__(self, split: PrecompSplit, extras: dict[str, np.ndarray] | None = None):
        self.split = split
        self.extras = _check_extras(split, extras)
        self.collate_fn = collate_images

    def __len__(self) -> int:
        return self.split.n_images

    def __getitem__(self, index: int) -> ImageItem:
        if not 0 <= index < len(self):
            raise IndexError(f"image index {index} out of range for {len(self)} images")
        return ImageItem(_load_image(self.split, index), index, _extras_rows(self.split, self.extras, index))


class CaptionDataset(Dataset):
    """One item per caption (evaluation, no augmentation), plus optional per-caption ``extras``."""

    def __init__(self, split: PrecompSplit, tokenizer: Tokenizer, extras: dict[str, np.ndarray] | None = None):
        self.split = split
        self.tokenizer = tokenizer
        self.extras = _check_extras(split, extras, "caption")
        self.collate_fn = partial(collate_captions, pad_id=tokenizer.pad_id)

    def __len__(self) -> int:
        return self.split.n_captions

    def __getitem__(self, index: int) -> CaptionItem:
        if not 0 <= index < len(self):
            raise IndexError(f"caption index {index} out of range for {len(self)} captions")
        return CaptionItem(self.tokenizer.encode(self.split.captions[index]), index,
                           _extras_rows(self.split, self.extras, index, "caption"))
