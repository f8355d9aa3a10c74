"""Figures: training curves, grouped metric bars, sweeps."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from itrlib.io import atomic_save


def plot_training_curves(steps: pd.DataFrame, val: pd.DataFrame, title: str = "") -> plt.Figure:
    """Left: training loss per logged step; right: dev rSum (and R@1) per epoch."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    if not steps.empty:
        ax_loss.plot(steps["step"], steps["loss"], lw=1)
    ax_loss.set(xlabel="optimiser step", ylabel="training loss (sum over batch)", title="loss", yscale="log")
    if not val.empty:
        epochs = val["epoch"] + 1
        ax_val.plot(epochs, val["rsum"], marker="o", label="rSum")
        ax_val.set(xlabel="epoch", ylabel="dev rSum", title="validation")
        ax_val.xaxis.set_major_locator(MaxNLocator(integer=True))
        twin = ax_val.twinx()
        twin.plot(epochs, val["i2t_r1"], ls="--", color="tab:orange", label="i2t R@1")
        twin.plot(epochs, val["t2i_r1"], ls=":", color="tab:green", label="t2i R@1")
        twin.set_ylabel("R@1 (%)")
        handles = ax_val.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax_val.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save as PNG (atomically), creating the folder."""
    path = Path(path)
    atomic_save(path, lambda handle: fig.savefig(handle, format=path.suffix.lstrip(".") or "png", dpi=dpi))
    return path


def plot_metric_bars(table: pd.DataFrame, metric: str = "rSum", title: str = "", group: str = "protocol",
                     hue: str = "method") -> plt.Figure:
    """Grouped bars of ``metric``: one group per ``group`` value (x), one colour per ``hue`` value."""
    pivot = table.pivot_table(index=group, columns=hue, values=metric, sort=False)
    pivot.index = [textwrap.fill(str(label), 16) for label in pivot.index]
    fig, ax = plt.subplots(figsize=(3.6 + 1.4 * len(pivot), 3.6))
    pivot.plot.bar(ax=ax, rot=0)
    ax.set(xlabel=group, ylabel=metric, title=title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # never over a bar
    # pandas draws a missing value as a 0 bar: label from the pivot so it gets no "0.0"
    for container, column in zip(ax.containers, pivot.columns, strict=True):
        ax.bar_label(container, labels=["" if pd.isna(v) else f"{v:.1f}" for v in pivot[column]], fontsize=7)
    fig.tight_layout()
    return fig


def plot_sweep(frame: pd.DataFrame, x: str, y: str = "rSum", hue: str = "protocol", title: str = "",
               xlabel: str | None = None) -> plt.Figure:
    """Line plot of ``y`` against ``x``, one line per ``hue`` value (e.g. rSum against AFA's k)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for name, group in frame.groupby(hue, sort=False):
        group = group.sort_values(x)
        ax.plot(group[x], group[y], marker="o", label=str(name))
    ax.set_xticks(sorted(frame[x].unique()))
    ax.set(xlabel=xlabel or x, ylabel=y, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
