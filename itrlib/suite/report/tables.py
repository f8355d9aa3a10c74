"""Result tables: metric dicts -> a DataFrame with the papers' columns -> Markdown, CSV and LaTeX files.

Every written table carries a :class:`Caption` (protocol, data, test images per evaluation, training budget,
where the reference rows are printed), and every rendering of a table goes through :func:`format_frame`,
so the notebook display and the files round alike: recalls and rSum with one decimal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from itrlib.io import atomic_write_text

STANDARD_COLUMNS: dict[str, str] = {
    "i2t_r1": "i2t R@1", "i2t_r5": "i2t R@5", "i2t_r10": "i2t R@10",
    "t2i_r1": "t2i R@1", "t2i_r5": "t2i R@5", "t2i_r10": "t2i R@10",
    "rsum": "rSum",
}
_METRIC_KEYS = {f"{d}_{m}" for d in ("i2t", "t2i") for m in ("r1", "r5", "r10", "medr", "meanr")} | {"rsum"}
METRIC_DECIMALS = 1
"""Decimals of every recall and rSum shown (files and notebook display), as in the papers."""
MISSING = "–"
"""How a metric a row lacks is shown (LaTeX: ``--``, the same dash)."""
CAPTION_LABELS: dict[str, str] = {
    "protocol": "Protocol", "data": "Data", "images": "Test images per evaluation", "training": "Training",
    "references": "Reference rows", "rows": "Rows",
}
"""Caption field -> the label shown before its text."""


@dataclass(frozen=True)
class Caption:
    """What a written table says about itself. Every field but ``rows`` is required (empty text: ValueError).

    ``title``: what the table shows; ``protocol``: the evaluation protocol(s); ``data``: which data each kind
    of row comes from (embedded synthetic vs real); ``images``: test images per evaluation (per fold for COCO
    5-fold 1K); ``training``: the training budget (epochs, batch size, text encoder); ``references``: where
    each paper row is printed (paper and table); ``rows``: what the rows are, when labels alone do not say.
    """

    title: str
    protocol: str
    data: str
    images: str
    training: str
    references: str
    rows: str = ""

    def __post_init__(self) -> None:
        missing = [f.name for f in fields(self) if f.name != "rows" and not str(getattr(self, f.name)).strip()]
        if missing:
            raise ValueError(f"a table caption needs {', '.join(missing)}: got an empty value")

    def items(self) -> dict[str, str]:
        """``{field: text}`` of the non-empty fields, title first."""
        return {f.name: getattr(self, f.name) for f in fields(self) if str(getattr(self, f.name)).strip()}

    def text(self) -> str:
        """The caption as one plain line: ``Title. Protocol: ... Data: ... Rows: ...``."""
        return self._render("{}", "{}:")

    def markdown(self) -> str:
        """The caption as one Markdown line (the title in bold, each label in italics)."""
        return self._render("**{}**", "*{}:*")

    def _render(self, title: str, label: str) -> str:
        """Title then every other item as ``label text.``, with the given format strings."""
        parts = [title.format(_sentence(self.title))]
        parts += [f"{label.format(CAPTION_LABELS[name])} {_sentence(text)}"
                  for name, text in self.items().items() if name != "title"]
        return " ".join(parts)


def _sentence(text: str) -> str:
    """``text`` stripped and ending with a full stop."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def metrics_frame(rows: list[dict], columns: Mapping[str, str] = STANDARD_COLUMNS) -> pd.DataFrame:
    """One row per dict: its label keys (e.g. ``method``) first, then ``columns`` (metric key -> label).

    Metrics of ``retrieval_metrics`` not named in ``columns`` (e.g. ``i2t_medr``) are left out. Metric
    values are rounded to :data:`METRIC_DECIMALS` decimals, as in the papers; a metric a row lacks is NaN.
    """
    frame = pd.DataFrame(rows)
    labels = [key for key in frame.columns if key not in columns and key not in _METRIC_KEYS]
    metrics = frame.reindex(columns=list(columns)).astype(float).round(METRIC_DECIMALS).rename(columns=dict(columns))
    return pd.concat([frame[labels], metrics], axis=1)


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _format_value(value: object, metric: bool, missing: str) -> str:
    """One cell as shown: a metric with :data:`METRIC_DECIMALS` decimals, another float as written (``0.125``)."""
    if isinstance(value, float) and pd.isna(value):
        return missing
    if metric:
        return f"{float(value):.{METRIC_DECIMALS}f}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_frame(df: pd.DataFrame, missing: str = MISSING) -> pd.DataFrame:
    """``df`` as the text every rendering shows (the one rounding rule of the suite).

    Metric columns (:data:`STANDARD_COLUMNS` labels) get one decimal (``78.0``, never ``78``), other float
    columns their shortest exact form (a merge ratio ``0.125``), integers as integers; a missing metric is
    ``missing``.
    """
    metric_labels = set(STANDARD_COLUMNS.values())
    return pd.DataFrame({column: [_format_value(v, column in metric_labels, missing) for v in df[column]]
                         for column in df.columns}, index=df.index, dtype=object)


def markdown_table(df: pd.DataFrame, caption: Caption | None = None) -> str:
    """The Markdown of ``df`` (after :func:`format_frame`), preceded by the caption line when given.

    The ``.md`` file :func:`write_table` writes is exactly this text plus a final newline, so a notebook
    that displays it shows what the file holds.
    """
    index = not isinstance(df.index, pd.RangeIndex)
    align = [("right" if _is_numeric(df[c]) else "left") for c in df.columns]
    table = format_frame(df).to_markdown(index=index, disable_numparse=True,
                                         colalign=(["left"] if index else []) + align)
    return table if caption is None else f"{caption.markdown()}\n\n{table}"


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (for a caption)."""
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(special.get(ch, ch) for ch in text)


def latex_table(df: pd.DataFrame, caption: Caption) -> str:
    """A LaTeX ``table`` float: ``\\caption`` (the caption's :meth:`Caption.text`) and the tabular of
    :func:`format_frame` (values and headers escaped; numeric columns right-aligned)."""
    index = not isinstance(df.index, pd.RangeIndex)
    align = ("l" if index else "") + "".join("r" if _is_numeric(df[c]) else "l" for c in df.columns)
    tabular = format_frame(df, missing="--").to_latex(index=index, escape=True, column_format=align)
    return (f"\\begin{{table}}[ht]\n\\centering\n\\caption{{{latex_escape(caption.text())}}}\n"
            f"{tabular}\\end{{table}}\n")


def caption_columns(caption: Caption) -> dict[str, str]:
    """The caption as CSV columns: ``caption_<field>`` -> text (the same on every row)."""
    return {f"caption_{name}": text for name, text in caption.items().items()}


def write_table(df: pd.DataFrame, stem: Path, caption: Caption) -> dict[str, Path]:
    """Write ``stem.md``, ``stem.csv`` and ``stem.tex`` atomically; returns ``{"md", "csv", "tex"}`` -> path.

    ``caption`` is required: no table is written without its protocol, data, test images per evaluation,
    training budget and reference rows. ``.md``: the caption line, a blank line, the table
    (:func:`markdown_table`). ``.tex``: a ``table`` float with ``\\caption`` (:func:`latex_table`). ``.csv``:
    the table's columns with their full values, then one column per caption item, ``caption_title``,
    ``caption_protocol``, ``caption_data``, ``caption_images``, ``caption_training``, ``caption_references``
    (and ``caption_rows`` when given), holding the same text on every row, so the file explains itself when
    read alone (``pd.read_csv(path)[list(df.columns)]`` is the table). Metrics are shown with one decimal
    (:func:`format_frame`). The index is written only when it is not the default 0..n-1 range.
    """
    if not isinstance(caption, Caption):
        raise TypeError(f"write_table needs a Caption, got {type(caption).__name__}")
    stem = Path(stem)
    index = not isinstance(df.index, pd.RangeIndex)
    texts = {
        "md": markdown_table(df, caption) + "\n",
        "csv": df.assign(**caption_columns(caption)).to_csv(index=index),
        "tex": latex_table(df, caption),
    }
    paths = {}
    for suffix, text in texts.items():
        paths[suffix] = stem.with_name(f"{stem.name}.{suffix}")
        atomic_write_text(paths[suffix], text)
    return paths
