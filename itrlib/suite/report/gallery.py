"""Qualitative retrieval galleries (MVSEN Figs. 6–9 style): for sampled queries, the ground truth and each
model's top-ranked captions (text retrieval), or each model's top images with the correct one framed in
green (image retrieval).

Images are drawn by an :class:`ImageSource`: scene sketches of the embedded dataset
(:mod:`itrlib.suite.report.scene_sketch`), files of a real image folder, or, without either, a panel that names
the image id. :func:`query_picker` wraps a figure function in an ipywidgets picker for JupyterLab.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from itrlib.errors import DataError
from itrlib.evaluation.examples import RetrievalExample
from itrlib.progress import in_jupyterlab
from itrlib.suite.report.plots import wrap_text
from itrlib.suite.report.scene_sketch import draw_scene, read_scenes

CORRECT, WRONG = "#1a9641", "#d7191c"


class ImageSource:
    """Draws image ``index`` of a split into an axes. Built by :func:`image_source`."""

    def __init__(self, ids: Sequence[int], scenes: list[dict] | None = None, folder: Path | None = None,
                 pattern: str = "{id}.jpg") -> None:
        self.ids, self.scenes, self.folder, self.pattern = list(ids), scenes, folder, pattern

    @property
    def kind(self) -> str:
        return "image folder" if self.folder else "scene sketches" if self.scenes is not None else "image ids only"

    def path(self, index: int) -> Path:
        """File of image ``index`` in the image folder (``pattern`` formatted with ``id``)."""
        if self.folder is None:
            raise DataError("no image folder was given")
        return self.folder / self.pattern.format(id=self.ids[index])

    def draw(self, ax: Axes, index: int) -> None:
        if self.folder is not None:
            path = self.path(index)
            if not path.is_file():
                raise DataError(f"{path} does not exist (image {index}, id {self.ids[index]}); check image_dir "
                                f"and image_pattern ({self.pattern!r})")
            ax.imshow(plt.imread(path))
            ax.set(xticks=[], yticks=[])
        elif self.scenes is not None:
            draw_scene(ax, self.scenes[index])
        else:
            ax.text(0.5, 0.5, f"image id {self.ids[index]}\n(no image folder given)", ha="center", va="center",
                    fontsize=7)
            ax.set(xlim=(0, 1), ylim=(0, 1), xticks=[], yticks=[])


def image_source(data_root: str | Path, split: str, ids: Sequence[int], image_dir: str | Path | None = None,
                 pattern: str = "{id}.jpg") -> ImageSource:
    """Real image files when ``image_dir`` is given (``pattern`` names a file from the image id of
    ``{split}_ids.txt``, e.g. ``COCO_val2014_{id:012d}.jpg``), else the split's scene sketches when the
    data has them (embedded dataset), else id-only panels."""
    if image_dir is not None:
        folder = Path(image_dir)
        if not folder.is_dir():
            raise DataError(f"image folder {folder} does not exist")
        return ImageSource(ids, folder=folder, pattern=pattern)
    if (Path(data_root) / f"{split}_scenes.jsonl").is_file():
        scenes = read_scenes(data_root, split)
        if len(scenes) != len(ids):
            raise DataError(f"{data_root}/{split}_scenes.jsonl has {len(scenes)} scenes for {len(ids)} images")
        return ImageSource(ids, scenes=scenes)
    return ImageSource(ids)


def _frame(ax: Axes, colour: str, width: float = 3.0) -> None:
    for spine in ax.spines.values():
        spine.set(edgecolor=colour, linewidth=width, visible=True)


def text_retrieval_figure(examples: Mapping[str, Sequence[RetrievalExample]], captions: Sequence[str],
                          images: ImageSource, title: str) -> plt.Figure:
    """One row per image query: the image, its first ground-truth caption, then each model's top-ranked
    caption (green: a ground truth, red: not) with the rank of its best ground truth.
    ``examples``: ``{model label: examples of the same queries in the same order}``."""
    labels = list(examples)
    rows = len(examples[labels[0]])
    fig, axes = plt.subplots(rows, 2, figsize=(11, 2.3 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.6]}, layout="constrained")
    for row in range(rows):
        first = examples[labels[0]][row]
        images.draw(axes[row, 0], first.query)
        axes[row, 0].set_title(f"image {first.query}", fontsize=7)
        text = axes[row, 1]
        text.axis("off")
        lines = [("GT: " + wrap_text(captions[first.gt[0]], 60), "black")]
        for label in labels:
            example = examples[label][row]
            lines.append((f"{label} (GT rank {example.gt_rank}): " + wrap_text(captions[example.top[0]], 60),
                          CORRECT if example.correct[0] else WRONG))
        y = 1.0
        for line, colour in lines:
            text.text(0, y, line, va="top", fontsize=7, color=colour, transform=text.transAxes)
            y -= (line.count("\n") + 1) * 0.1 + 0.04
    fig.suptitle(wrap_text(title, 110), fontsize=9)
    return fig


def image_retrieval_figure(examples: Mapping[str, Sequence[RetrievalExample]], captions: Sequence[str],
                           images: ImageSource, title: str, k: int = 2) -> plt.Figure:
    """For each caption query, one row per model: the query (and the model's rank of the correct image),
    then its top-``k`` images, framed green when correct and red when not."""
    labels = list(examples)
    queries = len(examples[labels[0]])
    rows = queries * len(labels)
    fig, axes = plt.subplots(rows, k + 1, figsize=(2.0 * (k + 2), 1.9 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2] + [1] * k}, layout="constrained")
    for q in range(queries):
        for m, label in enumerate(labels):
            example, row = examples[label][q], q * len(labels) + m
            axes[row, 0].axis("off")
            head = wrap_text(captions[example.query], 38) + "\n\n" if m == 0 else ""
            axes[row, 0].text(0, 1, f"{head}{label}\ncorrect image at rank {example.gt_rank}", va="top",
                              fontsize=7, transform=axes[row, 0].transAxes)
            for col, (index, correct) in enumerate(zip(example.top[:k], example.correct[:k], strict=True), 1):
                images.draw(axes[row, col], index)
                _frame(axes[row, col], CORRECT if correct else WRONG)
                axes[row, col].set_title(f"#{col}: image {index}", fontsize=7)
    fig.suptitle(wrap_text(title, 110), fontsize=9)
    return fig


@dataclass(frozen=True)
class HeadlessPicker:
    """What :func:`query_picker` shows in a headless kernel: one line saying where the picker is."""

    description: str

    def __repr__(self) -> str:
        return f"{self.description} picker: opens in JupyterLab (`make lab`); this headless run keeps the figures above"


def query_picker(draw: Callable[[int], plt.Figure], queries: Sequence[int], description: str = "query"):
    """An ipywidgets picker in a JupyterLab kernel: choosing a query redraws ``draw(query)`` below it.

    A headless kernel (papermill, nbval) gets a :class:`HeadlessPicker` line instead: no widget is built
    there (widget output through nbclient once stalled an executed notebook for good, 2026-11-30)."""
    if not in_jupyterlab():
        return HeadlessPicker(description)
    import ipywidgets

    def show(query: int) -> None:
        draw(query)
        plt.show()

    dropdown = ipywidgets.Dropdown(options=list(queries), description=description)
    return ipywidgets.interactive(show, query=dropdown)
