"""Figures: training curves, grouped metric bars (ours and the papers in separate panels), sweeps.

A figure that shows our numbers beside a paper's puts them in separate panels, each titled with its data,
test images, text encoder and budget: the embedded synthetic data and the papers' real data never share an
axis.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from itrlib.io import atomic_save
from itrlib.suite.report.results import is_ours

NOT_COMPARABLE = "Different data, encoders and budgets: compare the pattern within each panel, not bars across panels."
MARK_COLOR = "0.35"
"""Colour of the schedule marks (warm-up end, lr decay, default k)."""


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save as PNG (atomically), creating the folder."""
    path = Path(path)
    atomic_save(path, lambda handle: fig.savefig(handle, format=path.suffix.lstrip(".") or "png", dpi=dpi))
    return path


def wrap_text(text: str, width: int) -> str:
    """``text`` wrapped to ``width`` characters a line (paragraphs kept)."""
    return "\n".join(textwrap.fill(part, width) for part in text.split("\n"))


def _mark(ax: Axes, x: float, label: str) -> None:
    """A dashed vertical line at ``x`` (data units) with ``label`` written along it, at the top."""
    ax.axvline(x, ls="--", lw=1, color=MARK_COLOR)
    ax.annotate(label, (x, 0.98), xycoords=blended_transform_factory(ax.transData, ax.transAxes),
                xytext=(-3, 0), textcoords="offset points", rotation=90, va="top", ha="right", fontsize=7,
                color=MARK_COLOR)


# --- training curves -----------------------------------------------------------------------------------


def _epoch_ends(steps: pd.DataFrame, val: pd.DataFrame) -> dict[int, float]:
    """Last optimiser step of each 0-based epoch: the validation record's step, else the last logged step."""
    ends: dict[int, float] = {}
    if not steps.empty:
        ends.update(steps.groupby("epoch")["step"].max().to_dict())
    if not val.empty and "step" in val.columns:
        ends.update(val.set_index("epoch")["step"].to_dict())
    return {int(epoch): float(step) for epoch, step in sorted(ends.items())}


def _epochs_text(first: int, last: int) -> str:
    return f"epoch {first}" if first == last else f"epochs {first}–{last}"


def _schedule_marks(hardest_from_epoch: int | None, lr_decay_epochs: Sequence[int],
                    lr_decay_factor: float) -> dict[int, str]:
    """``{epoch: short label}`` of the epochs where the schedule changes (0-based, as in the config)."""
    marks: dict[int, str] = {}
    if hardest_from_epoch:
        marks[hardest_from_epoch] = f"hardest negative from epoch {hardest_from_epoch}"
    for epoch in lr_decay_epochs:
        if epoch > 0:
            label = f"lr ×{lr_decay_factor:g} from epoch {epoch}"
            marks[epoch] = f"{marks[epoch]}\n{label}" if epoch in marks else label
    return marks


def schedule_note(hardest_from_epoch: int | None, lr_decay_epochs: Sequence[int], lr_decay_factor: float) -> str:
    """The text under the training curves: epoch numbering, the warm-up cliff and the lr decay in words."""
    note = "Epochs are numbered from 0, as in config.yaml."
    if hardest_from_epoch:
        warmup = _epochs_text(0, hardest_from_epoch - 1)
        note += (f" Warm-up ({warmup}, model.mean_warmup_epochs = {hardest_from_epoch}): the triplet loss sums the "
                 f"hinge over all negatives of a batch. From epoch {hardest_from_epoch} only the hardest negative "
                 "counts (one negative per query instead of all), so the loss drops sharply there: a change of "
                 "the loss, not of the model.")
    decays = [e for e in lr_decay_epochs if e > 0]
    if decays:
        note += (f" Learning rate ×{lr_decay_factor:g} from epoch {', '.join(map(str, decays))} "
                 "(train.lr_decay_epochs).")
    return note


def _plot_loss(ax: Axes, steps: pd.DataFrame, ends: dict[int, float], marks: dict[int, str]) -> None:
    """Loss per logged step, epochs numbered (0-based) on the top axis, schedule changes marked."""
    if not steps.empty:
        ax.plot(steps["step"], steps["loss"], lw=1)
    ax.set(xlabel="optimiser step", ylabel="training loss (sum over batch)", yscale="log")
    starts = {epoch: ends.get(epoch - 1, 0.0) + 0.5 for epoch in ends}
    top = ax.secondary_xaxis("top")
    top.set_ticks([(starts[e] + ends[e]) / 2 for e in ends], labels=[str(e) for e in ends])
    top.tick_params(labelsize=7, length=0)
    top.set_xlabel("epoch (0-based, as in config.yaml)", fontsize=8)
    for epoch, label in marks.items():
        if epoch in starts:
            _mark(ax, starts[epoch], label)


def _plot_validation(ax: Axes, val: pd.DataFrame, marks: dict[int, str]) -> None:
    """Dev rSum (left axis) and R@1 (right axis) per 0-based epoch, schedule changes marked."""
    ax.set(xlabel="epoch (0-based, as in config.yaml; validated at its end)", ylabel="dev rSum")
    if val.empty:
        return
    epochs = val["epoch"]
    ax.plot(epochs, val["rsum"], marker="o", label="rSum")
    ax.set_xticks(sorted(epochs.unique()))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    twin = ax.twinx()
    twin.plot(epochs, val["i2t_r1"], ls="--", color="tab:orange", label="i2t R@1")
    twin.plot(epochs, val["t2i_r1"], ls=":", color="tab:green", label="t2i R@1")
    twin.set_ylabel("R@1 (%)")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
    for epoch, label in marks.items():
        if epochs.min() < epoch <= epochs.max():
            _mark(ax, epoch - 0.5, label)


def plot_training_curves(steps: pd.DataFrame, val: pd.DataFrame, title: str = "", *,
                         hardest_from_epoch: int | None = None, lr_decay_epochs: Sequence[int] = (),
                         lr_decay_factor: float = 0.1) -> plt.Figure:
    """Left: training loss per logged step; right: dev rSum (and R@1) per epoch.

    Epochs are numbered from 0, as in the config (``train.lr_decay_epochs``, ``model.mean_warmup_epochs``).
    ``hardest_from_epoch`` (the first epoch of the hardest-negative loss; before it the loss sums over all
    negatives, so its scale drops there) and each lr decay epoch get a dashed line and a label on both
    panels; :func:`itrlib.suite.report.results.training_schedule` reads them from a run's ``config.yaml``.
    """
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    marks = _schedule_marks(hardest_from_epoch, lr_decay_epochs, lr_decay_factor)
    _plot_loss(ax_loss, steps, _epoch_ends(steps, val), marks)
    ax_loss.set_title("training loss", fontsize=10)
    _plot_validation(ax_val, val, marks)
    ax_val.set_title("validation (dev)", fontsize=10)
    fig.suptitle(wrap_text(title, 110), fontsize=10)
    fig.supxlabel(wrap_text(schedule_note(hardest_from_epoch, lr_decay_epochs, lr_decay_factor), 160), fontsize=8)
    return fig


# --- bars ----------------------------------------------------------------------------------------------


def _pivot(table: pd.DataFrame, metric: str, group: str, hue: str) -> pd.DataFrame:
    """``metric`` with one row per ``group`` value and one column per ``hue`` value, in table order."""
    pivot = table.pivot_table(index=group, columns=hue, values=metric, sort=False)
    pivot.index = [textwrap.fill(str(label), 16) for label in pivot.index]
    return pivot


def _draw_bars(ax: Axes, pivot: pd.DataFrame, colors: dict | None = None) -> None:
    """Grouped bars of a :func:`_pivot`, each labelled with its value (a missing value gets no bar label)."""
    color = [colors[c] for c in pivot.columns] if colors else None
    pivot.plot.bar(ax=ax, rot=0, color=color, legend=False)
    # pandas draws a missing value as a 0 bar: label from the pivot so it gets no "0.0"
    for container, column in zip(ax.containers, pivot.columns, strict=True):
        ax.bar_label(container, labels=["" if pd.isna(v) else f"{v:.1f}" for v in pivot[column]], fontsize=7)
    ax.margins(y=0.12)


def plot_metric_bars(table: pd.DataFrame, metric: str = "rSum", title: str = "", group: str = "protocol",
                     hue: str = "method") -> plt.Figure:
    """Grouped bars of ``metric`` on one axis: one group per ``group`` value (x), one colour per ``hue`` value.

    For rows of one source only; ours beside a paper's: :func:`plot_ours_beside_paper`.
    """
    pivot = _pivot(table, metric, group, hue)
    fig, ax = plt.subplots(figsize=(3.6 + 1.4 * len(pivot), 3.6))
    _draw_bars(ax, pivot)
    ax.set(xlabel=group, ylabel=metric, title=title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # never over a bar
    fig.tight_layout()
    return fig


def plot_ours_beside_paper(table: pd.DataFrame, metric: str = "rSum", *, group: str, hue: str, ours_title: str,
                           paper_title: str, title: str = "", note: str = "") -> plt.Figure:
    """Our rows (``source`` ``itrlib ...``) and the paper rows in two panels with their own y axes.

    Each panel is titled with its setting (``ours_title``/``paper_title``: data, test images, text encoder,
    budget, e.g. from :func:`itrlib.suite.report.results.ours_title`); a ``hue`` value keeps its colour in both.
    Without paper rows the right panel says so. ``note`` (e.g. what rows I–IV are) goes under the panels.
    """
    mask = is_ours(table)
    ours, papers = _pivot(table[mask], metric, group, hue), None
    if not table[~mask].empty:
        papers = _pivot(table[~mask], metric, group, hue)
    widths = [max(len(ours), 1), max(len(papers) if papers is not None else 2, 1)]
    fig, axes = plt.subplots(1, 2, figsize=(max(10.0, 2.6 + 1.3 * sum(widths)), 5.0), layout="constrained",
                             gridspec_kw={"width_ratios": widths})
    colors = {h: f"C{i}" for i, h in enumerate(dict.fromkeys(table[hue]))}
    for ax, pivot, panel_title, width in zip(axes, (ours, papers), (ours_title, paper_title), widths, strict=True):
        if pivot is None:
            _no_values(ax, panel_title or "the paper", "reports no values for these rows.")
            continue
        _draw_bars(ax, pivot, colors)
        ax.set(xlabel=group, ylabel=metric)
        ax.set_title(wrap_text(panel_title, int(75 * width / sum(widths)) + 10), fontsize=8)
    if any(len(p.columns) > 1 for p in (ours, papers) if p is not None):  # else the panel titles name the hue
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
        fig.legend(handles, list(colors), loc="outside lower center", ncols=len(colors), fontsize=8,
                   frameon=False)
    fig.suptitle(wrap_text(f"{title}\n{NOT_COMPARABLE}" if title else NOT_COMPARABLE, 120), fontsize=10)
    if note:
        fig.supxlabel(wrap_text(note, 150), fontsize=7)
    return fig


def _no_values(ax: Axes, title: str, text: str) -> None:
    """An empty panel holding ``title`` and ``text`` (a paper that prints no values)."""
    ax.axis("off")
    ax.text(0.5, 0.5, wrap_text(f"{title}\n\n{text}", 40), transform=ax.transAxes, ha="center", va="center",
            fontsize=8, bbox={"boxstyle": "round", "facecolor": "0.95", "edgecolor": "0.6"})


# --- sweeps --------------------------------------------------------------------------------------------


def _draw_lines(ax: Axes, frame: pd.DataFrame, x: str, y: str, hue: str) -> None:
    """One line of ``y`` against ``x`` per ``hue`` value, markers at the points, x ticks at the points."""
    for name, part in frame.groupby(hue, sort=False):
        part = part.sort_values(x)
        ax.plot(part[x], part[y], marker="o", label=str(name))
    ax.set_xticks(sorted(frame[x].unique()))
    ax.legend(fontsize=8)


def plot_sweep(frame: pd.DataFrame, x: str, y: str = "rSum", hue: str = "protocol", title: str = "",
               xlabel: str | None = None, *, default: float | None = None, default_label: str = "",
               ours_title: str = "", paper: pd.DataFrame | None = None, paper_title: str = "",
               paper_note: str = "") -> plt.Figure:
    """Line plot of ``y`` against ``x``, one line per ``hue`` value (e.g. rSum against AFA's k).

    ``default`` marks the default ``x`` with a dashed line and ``default_label``. Given ``paper`` (the
    points of :func:`itrlib.suite.report.paper.paper_sweep`: ``parameter``, ``value``, ``protocol``), the paper's
    curve gets its own panel titled ``paper_title``; when it holds no points that panel says the paper gives
    no values, with ``paper_note`` (what the paper says instead).
    """
    two = paper is not None
    fig, axes = plt.subplots(1, 2 if two else 1, figsize=(10.4 if two else 5.6, 4.2), layout="constrained",
                             squeeze=False)
    ax = axes[0, 0]
    _draw_lines(ax, frame, x, y, hue)
    ax.set(xlabel=xlabel or x, ylabel=y)
    ax.set_title(wrap_text(ours_title, 60), fontsize=8)
    if default is not None:
        _mark(ax, default, default_label or f"default {default:g}")
    if two:
        _paper_sweep_panel(axes[0, 1], paper, xlabel or x, y, paper_title, paper_note)
    fig.suptitle(wrap_text(f"{title}\n{NOT_COMPARABLE}" if two else title, 110), fontsize=10)
    return fig


def _paper_sweep_panel(ax: Axes, paper: pd.DataFrame, xlabel: str, ylabel: str, title: str, note: str) -> None:
    """The paper's sweep points, or a panel saying that the paper gives none (only ``note``)."""
    if paper.empty:
        _no_values(ax, title, f"The paper gives no values for this figure, only the trend: {note}")
        return
    _draw_lines(ax, paper, "parameter", "value", "protocol")
    ax.set(xlabel=xlabel, ylabel=f"{ylabel} (as printed)")
    ax.set_title(wrap_text(title, 60), fontsize=8)
