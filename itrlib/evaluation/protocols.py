"""Evaluation protocols of the papers (AFA Sec. 4, as woodfrog/vse_infty evaluates them; docs/PAPER_DIFFERENCES.md
section 1): Flickr30K 1K, COCO 5K and COCO 5-fold 1K.

``PROTOCOLS`` is the one list of protocol names in the suite (the CLI, the profiles and the paper tables
read it); :func:`whole_split` is the one way to evaluate a whole split as one block (model selection on dev,
a run's scores of a split). Ranking a score matrix under a protocol is :mod:`itrlib.evaluation.ranking`.
"""

from __future__ import annotations

from dataclasses import dataclass

from itrlib.config import TIE_RULES
from itrlib.errors import ConfigError, DataError


@dataclass(frozen=True)
class Protocol:
    """A named protocol: which split to evaluate and into how many equal image folds to cut it.

    ``paper_dataset``/``paper_protocol`` name the protocol in the papers' tables (``paper_tables.csv``),
    ``paper_images`` the test images per evaluation (per fold) there.
    """

    name: str
    split: str
    folds: int
    description: str
    paper_dataset: str | None = None
    paper_protocol: str | None = None
    paper_images: int | None = None


PROTOCOLS: dict[str, Protocol] = {
    "f30k1k": Protocol("f30k1k", "test", 1,
                       "Flickr30K 1K test: 1,000 images x 5,000 captions, one evaluation", "f30k", "1k", 1000),
    "coco1k": Protocol("coco1k", "testall", 5,
                       "COCO 5-fold 1K: testall cut into 5 folds of 1,000 images x 5,000 captions; "
                       "every metric (rsum included) averaged over the folds", "coco", "5fold1k", 1000),
    "coco5k": Protocol("coco5k", "testall", 1,
                       "COCO 5K: the full testall split, 5,000 images x 25,000 captions, one evaluation",
                       "coco", "5k", 5000),
}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; an unknown name raises ConfigError listing the valid ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        valid = ", ".join(sorted(PROTOCOLS))
        raise ConfigError(f"unknown evaluation protocol {name!r}; valid: {valid}") from None


def whole_split(split: str) -> Protocol:
    """A whole ``split`` evaluated as one block (no folds), named after the split."""
    return Protocol(name=split, split=split, folds=1, description=f"the whole {split} split as one block")


def fold_bounds(n_images: int, folds: int) -> list[tuple[int, int]]:
    """``folds`` equal, contiguous ``[start, stop)`` image ranges covering ``range(n_images)``."""
    if folds < 1:
        raise ConfigError(f"folds must be >= 1, got {folds}")
    if n_images < folds or n_images % folds:
        raise DataError(f"{n_images} images cannot be cut into {folds} equal non-empty folds")
    size = n_images // folds
    return [(f * size, (f + 1) * size) for f in range(folds)]


def check_tie_rule(ties: str) -> str:
    if ties not in TIE_RULES:
        raise ConfigError(f"unknown tie rule {ties!r}; valid: {', '.join(TIE_RULES)}")
    return ties


def protocol_blocks(n_images: int, protocol: Protocol, caps_per_image: int = 5) -> list[tuple[slice, slice]]:
    """(image slice, caption slice) of every fold of ``protocol`` on a split of ``n_images`` images."""
    return [(slice(start, stop), slice(start * caps_per_image, stop * caps_per_image))
            for start, stop in fold_bounds(n_images, protocol.folds)]
