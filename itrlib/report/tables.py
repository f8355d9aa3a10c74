"""Result tables: metric dicts -> a DataFrame with the papers' columns -> Markdown, CSV and LaTeX files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from itrlib.io import atomic_write_text

STANDARD_COLUMNS: dict[str, str] = {
    "i2t_r1": "i2t R@1", "i2t_r5": "i2t R@5", "i2t_r10": "i2t R@10",
    "t2i_r1": "t2i R@1", "t2i_r5": "t2i R@5", "t2i_r10": "t2i R@10",
    "rsum": "rSum",
}
_METRIC_KEYS = {f"{d}_{m}" for d in ("i2t", "t2i") for m in ("r1", "r5", "r10", "medr", "meanr")} | {"rsum"}


def metrics_frame(rows: list[dict], columns: Mapping[str, str] = STANDARD_COLUMNS) -> pd.DataFrame:
    """One row per dict: its label keys (e.g. ``method``) first, then ``columns`` (metric key -> label).

    Metrics of ``retrieval_metrics`` not named in ``columns`` (e.g. ``i2t_medr``) are left out. Metric
    values are rounded to one decimal, as in the papers; a metric a row lacks is NaN.
    """
    frame = pd.DataFrame(rows)
    labels = [key for key in frame.columns if key not in columns and key not in _METRIC_KEYS]
    metrics = frame.reindex(columns=list(columns)).astype(float).round(1).rename(columns=dict(columns))
    return pd.concat([frame[labels], metrics], axis=1)


def _float_labels(df: pd.DataFrame) -> list[str]:
    """Float columns that are not metrics (e.g. a merge ratio 0.125): one-decimal formatting must not round them."""
    metric_labels = set(STANDARD_COLUMNS.values())
    return [c for c in df.columns if c not in metric_labels and pd.api.types.is_float_dtype(df[c])]


def write_table(df: pd.DataFrame, stem: Path) -> dict[str, Path]:
    """Write ``stem.md``, ``stem.csv`` and ``stem.tex`` atomically; returns ``{"md", "csv", "tex"}`` -> path.

    Metrics are shown with one decimal; other float columns as written (``0.125``). The index is written
    only when it is not the default 0..n-1 range.
    """
    stem = Path(stem)
    index = not isinstance(df.index, pd.RangeIndex)
    labels = _float_labels(df)
    shown = df.assign(**{c: df[c].map(lambda v: f"{v:g}") for c in labels})
    offset = 1 if index else 0  # tabulate counts the index as a column
    as_text = [offset + list(df.columns).index(c) for c in labels]  # tabulate would re-parse "0.125" as a float
    texts = {
        "md": shown.to_markdown(index=index, floatfmt=".1f", disable_numparse=as_text) + "\n",
        "csv": df.to_csv(index=index),
        "tex": shown.to_latex(index=index, float_format="%.1f", na_rep="--"),
    }
    paths = {}
    for suffix, text in texts.items():
        paths[suffix] = stem.with_name(f"{stem.name}.{suffix}")
        atomic_write_text(paths[suffix], text)
    return paths
