"""ECCV Caption and CxC metrics of a COCO 5K test score matrix, through the ``eccv-caption`` package.

ECCV Caption (Chun et al., ECCV 2022) and CxC (Parekh et al., EACL 2021) add the positives that COCO's five
captions per image miss. The package ``eccv-caption`` (0.1.0, an optional extra: ``pip install -e ".[eccv]"``)
ships both annotations and the original COCO ones, keyed by COCO image ids and COCO caption ids, and computes
the metrics from each query's ranked list of ids. This module turns a score matrix of the 5,000 ``testall``
images (precomp layout: ``testall_ids.txt`` holds their COCO image ids) into those ranked lists.

Captions are matched to COCO caption ids by position: caption k of an image is the k-th smallest COCO caption id
of that image, which is the order of the package's own test caption list (``coco_test_ids.npy``: five ascending
ids per image). Only the metrics that tell captions apart (ECCV, CxC) depend on that order; R@K on COCO's own
positives does not. Ranked lists are cut at the largest number of positives of any query (48 on ECCV Caption;
mAP@R and R-Precision read the first R items, R@K the first K <= 10), ties ordered by index.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from itrlib.errors import DataError, ItrlibError

with warnings.catch_warnings():  # the package warns at import when the optional ujson is missing
    warnings.simplefilter("ignore", UserWarning)
    try:
        import eccv_caption
    except ImportError:  # an optional extra: absent, eccv_metrics says how to install it
        eccv_caption = None

INSTALL_HINT = 'pip install "eccv-caption==0.1.0" (or the extra: pip install -e ".[eccv]")'
TEST_IMAGES = 5000
CAPTIONS_PER_IMAGE = 5
TARGET_METRICS = ("eccv_map_at_r", "eccv_rprecision", "eccv_r1", "cxc_recalls")
"""What :func:`eccv_metrics` asks the package for: ECCV Caption mAP@R, R-Precision and R@1, CxC R@1/5/10."""
RECALL_KS = (1, 5, 10)


def package_metrics() -> Any:
    """The package's ``Metrics`` (its annotations loaded), or an :class:`ItrlibError` saying how to install it."""
    if eccv_caption is None:
        raise ItrlibError(f"ECCV Caption / CxC metrics need the eccv-caption package, which is not installed: "
                          f"{INSTALL_HINT}")
    return eccv_caption.Metrics()


def coco_caption_ids(image_ids: Sequence[int], metrics: Any, source: str = "testall_ids.txt") -> np.ndarray:
    """(5 x N_img,) COCO caption ids of the captions of ``image_ids`` (COCO image ids, one per test image): each
    image's five caption ids in ascending order. A :class:`DataError` naming ``source`` when the images are not
    the 5,000 COCO 5K test images."""
    image_ids = np.asarray(image_ids, dtype=np.int64)
    known = metrics.coco_gts["i2t"]
    if len(image_ids) != TEST_IMAGES:
        raise DataError(f"{source}: {len(image_ids)} images; ECCV Caption / CxC metrics need the {TEST_IMAGES} "
                        "images of the COCO 5K test split (testall)")
    unknown = [int(i) for i in image_ids if int(i) not in known]
    if unknown:
        raise DataError(f"{source}: {len(unknown)} of {TEST_IMAGES} ids are not COCO 5K test image ids (first: "
                        f"{unknown[0]}); ECCV Caption / CxC metrics need a folder whose ids are COCO image ids")
    if len(set(image_ids.tolist())) != TEST_IMAGES:
        raise DataError(f"{source}: an image id appears more than once")
    return np.concatenate([np.sort(np.asarray(known[int(i)], dtype=np.int64)) for i in image_ids])


def ranked_ids(scores: np.ndarray, item_ids: np.ndarray, depth: int, chunk: int = 512) -> np.ndarray:
    """(Q, depth) ids of each row's ``depth`` highest-scoring items, best first, equal scores by item index;
    ``chunk`` rows at a time (a row block's sort keys, not the whole matrix's, are held at once)."""
    depth = min(depth, scores.shape[1])
    out = np.empty((scores.shape[0], depth), dtype=item_ids.dtype)
    for start in range(0, scores.shape[0], chunk):
        block = -np.asarray(scores[start:start + chunk])
        top = np.argpartition(block, depth - 1, axis=1)[:, :depth]
        order = np.lexsort((top, np.take_along_axis(block, top, axis=1)), axis=1)
        out[start:start + chunk] = item_ids[np.take_along_axis(top, order, axis=1)]
    return out


def _depth(metrics: Any) -> int:
    gts = (metrics.eccv_gts, metrics.cxc_gts)
    return max(max(RECALL_KS), *(len(v) for g in gts for side in g.values() for v in side.values()))


def eccv_metrics(scores: np.ndarray, image_ids: Sequence[int], *, metrics: Any = None,
                 source: str = "testall_ids.txt") -> dict[str, dict[str, float]]:
    """ECCV Caption mAP@R, R-Precision and R@1 and CxC R@1/5/10 of ``scores`` (5,000 x 25,000, images x captions,
    caption c of image c // 5) in percent: ``{"eccv_map_at_r": {"i2t": ..., "t2i": ...}, ..., "cxc_r10": ...}``.
    ``image_ids``: the images' COCO ids (``testall_ids.txt``)."""
    metrics = package_metrics() if metrics is None else metrics
    scores = np.asarray(scores, dtype=np.float32)
    if scores.shape != (TEST_IMAGES, TEST_IMAGES * CAPTIONS_PER_IMAGE):
        raise DataError(f"ECCV Caption / CxC metrics need the scores of the {TEST_IMAGES} COCO 5K test images x "
                        f"{TEST_IMAGES * CAPTIONS_PER_IMAGE} captions, got {scores.shape}")
    image_ids = np.asarray(image_ids, dtype=np.int64)
    caption_ids = coco_caption_ids(image_ids, metrics, source)
    depth = _depth(metrics)
    i2t = dict(zip(image_ids.tolist(), ranked_ids(scores, caption_ids, depth).tolist(), strict=True))
    t2i = dict(zip(caption_ids.tolist(), ranked_ids(scores.T, image_ids, depth).tolist(), strict=True))
    found = metrics.compute_all_metrics(i2t, t2i, target_metrics=TARGET_METRICS, Ks=RECALL_KS, verbose=False)
    return {name: {side: 100.0 * float(value) for side, value in by_side.items()} for name, by_side in found.items()}
