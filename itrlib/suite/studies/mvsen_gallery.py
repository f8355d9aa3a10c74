"""MVSEN Figs. 6–9: qualitative retrieval of MVSEN beside the suite's other models, from the test scores of
notebook 01's runs (saved ``scores-<split>.npy``, computed and saved once when absent).

Figs. 6/8 are text/image retrieval on the F30K-style test split (``test``), Figs. 7/9 on the COCO-style
split (``testall``, all of its images). The same sampled queries are shown for every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from itrlib.data.precomp import PrecompSplit, open_split
from itrlib.evaluation.examples import RetrievalExample, image_retrieval, sample_queries, text_retrieval
from itrlib.evaluation.protocols import get_protocol
from itrlib.runs.any_run import run_split_scores
from itrlib.suite.profiles import get_profile
from itrlib.suite.report.gallery import ImageSource, image_retrieval_figure, image_source, text_retrieval_figure
from itrlib.suite.report.results import Results, data_kind
from itrlib.suite.studies.mvsen import ENSEMBLE, OTHER_MODELS

MODELS = (ENSEMBLE, *(label for label, _, _ in OTHER_MODELS))
"""Models side by side (labels of :func:`itrlib.suite.studies.mvsen.run_comparison`): the MVSEN ensemble (alpha
0.5), AFA, VSE∞ and USER (SGE)."""
FIGURES = {"test": ("Fig. 6", "Fig. 8", "Flickr30K-style test split"),
           "testall": ("Fig. 7", "Fig. 9", "MS-COCO-style testall split")}
"""Split -> (text-retrieval figure, image-retrieval figure, what the paper's figure shows)."""
QUERIES = {"reduced": 2, "default": 3}
"""Queries drawn per figure."""


def gallery_splits(profile: str) -> list[str]:
    """Splits of the profile's protocols, in :data:`FIGURES` order (f30k: ``test``; coco: ``testall``)."""
    splits = {get_protocol(p).split for p in get_profile(profile).protocols}
    return [split for split in FIGURES if split in splits]


def query_count(profile: str) -> int:
    return QUERIES["reduced" if get_profile(profile).reduced_studies else "default"]


@dataclass
class Gallery:
    """Everything a gallery figure of one split needs: captions, images, each model's scores."""

    split: str
    data: PrecompSplit
    images: ImageSource
    scores: dict[str, np.ndarray]

    def text_examples(self, images: Sequence[int], k: int = 5) -> dict[str, list[RetrievalExample]]:
        return {label: text_retrieval(s, images, k, self.data.caps_per_image) for label, s in self.scores.items()}

    def image_examples(self, captions: Sequence[int], k: int = 5) -> dict[str, list[RetrievalExample]]:
        return {label: image_retrieval(s, captions, k, self.data.caps_per_image) for label, s in self.scores.items()}


def load_gallery(results: Results, split: str, *, models: Sequence[str] = MODELS, data_root: str | None = None,
                 image_dir: str | None = None, image_pattern: str = "{id}.jpg", progress: bool = True) -> Gallery:
    """The scores of ``models`` (labels of ``results``) on ``split`` and the split's captions and images
    (``image_dir``: real image files named by ``image_pattern``; else scene sketches on synthetic data)."""
    missing = [m for m in models if m not in results]
    if missing:
        raise KeyError(f"models {missing} are not in the results ({', '.join(map(str, results))})")
    scores, roots = {}, set()
    for label in models:
        run = next(iter(results[label].values()))["run"]
        scores[label], meta = run_split_scores(run, split, data_root=data_root, progress=progress)
        roots.add(str(Path(meta["data_root"]).resolve()))
    if len(roots) != 1:
        raise ValueError(f"the models were scored on different data folders: {sorted(roots)}")
    data = open_split(roots.pop(), split)
    for label, matrix in scores.items():
        if matrix.shape != (data.n_images, data.n_captions):
            raise ValueError(f"{label}: scores {matrix.shape} do not match {split} "
                             f"({data.n_images} images, {data.n_captions} captions)")
    return Gallery(split, data, image_source(data.root, split, data.image_ids, image_dir, image_pattern), scores)


def gallery_queries(gallery: Gallery, profile: str, seed: int = 0) -> tuple[list[int], list[int]]:
    """(image queries, caption queries) drawn with ``seed``: the same for every model."""
    count = query_count(profile)
    return (sample_queries(gallery.data.n_images, count, seed),
            sample_queries(gallery.data.n_captions, count, seed + 1))



def gallery_figures(gallery: Gallery, image_queries: Sequence[int], caption_queries: Sequence[int], profile: str,
                    k: int = 2) -> dict[str, plt.Figure]:
    """``{file stem: figure}``: the text-retrieval figure (Fig. 6/7) of ``image_queries`` and the
    image-retrieval figure (Fig. 8/9) of ``caption_queries``, every model of the gallery side by side."""
    text_fig, image_fig, what = FIGURES[gallery.split]
    source = f"{what} of {data_kind(profile)}; images: {gallery.images.kind}"
    return {
        f"mvsen_{text_fig.replace('. ', '').lower()}_text_retrieval_{gallery.split}": text_retrieval_figure(
            gallery.text_examples(image_queries), gallery.data.captions, gallery.images,
            f"MVSEN {text_fig}: text retrieval — the ground truth and each model's top caption "
            f"(green: a correct caption, red: not) — {source}"),
        f"mvsen_{image_fig.replace('. ', '').lower()}_image_retrieval_{gallery.split}": image_retrieval_figure(
            gallery.image_examples(caption_queries), gallery.data.captions, gallery.images,
            f"MVSEN {image_fig}: image retrieval — each model's top-{k} images (green frame: the correct "
            f"image) — {source}", k=k)}


def examples_summary(gallery: Gallery, image_queries: Sequence[int], caption_queries: Sequence[int],
                     k: int = 3) -> str:
    """One line per (kind, model): each query's top-``k`` items and ground-truth rank (shown, not checked:
    near-tied scores order differently under other float rounding, e.g. USER's at the smoke budget)."""
    lines = []
    for kind, examples in (("text", gallery.text_examples(image_queries, k)),
                           ("image", gallery.image_examples(caption_queries, k))):
        for label, rows in examples.items():
            shown = ", ".join(f"{e.query}->{list(e.top)} gt@{e.gt_rank}" for e in rows)
            lines.append(f"{gallery.split} {kind} retrieval, {label}: {shown}")
    return "\n".join(lines)


def _stable_rank(row: np.ndarray, item: int) -> int:
    """1-based rank of ``item`` in ``row`` sorted best first, ties in index order (a direct count)."""
    return int((row > row[item]).sum() + (row[:item] == row[item]).sum()) + 1


def _agrees(rows: np.ndarray, example: RetrievalExample) -> bool:
    """Whether ``example`` is what its query's scores ``rows`` (N,) say: top items best first, ground-truth
    rank the best rank of a ground-truth item."""
    top_ranks = [_stable_rank(rows, item) for item in example.top]
    return top_ranks == list(range(1, len(example.top) + 1)) and \
        example.gt_rank == min(_stable_rank(rows, item) for item in example.gt)


def examples_check(gallery: Gallery, image_queries: Sequence[int], caption_queries: Sequence[int], k: int = 3
                   ) -> str:
    """What holds on any machine, one line per split: the drawn queries, and whether every model's top-``k``
    items and ground-truth ranks agree with its score matrix (recounted directly)."""
    agree = all(_agrees(gallery.scores[label][query], e)
                for label, rows in gallery.text_examples(image_queries, k).items()
                for query, e in zip(image_queries, rows, strict=True)) and \
        all(_agrees(gallery.scores[label][:, query], e)
            for label, rows in gallery.image_examples(caption_queries, k).items()
            for query, e in zip(caption_queries, rows, strict=True))
    return (f"{gallery.split}: image queries {list(image_queries)}, caption queries {list(caption_queries)}; "
            f"top-{k} and ground-truth ranks of {', '.join(gallery.scores)} agree with their scores: {agree}")
