"""The three papers' reported numbers, read from the CSV files packaged in ``itrlib/reference``."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import pandas as pd

_KEY = ["paper", "dataset", "protocol", "method", "variant", "metric"]


@cache
def _read(name: str) -> pd.DataFrame:
    with resources.files("itrlib").joinpath("reference", name).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, keep_default_na=False, dtype=str)


def load_reference(name: str) -> pd.DataFrame:
    """A packaged reference CSV (``paper_tables.csv``, ``paper_timings.csv``, ``paper_sweeps_text.csv``)
    with every column as text; empty cells are empty strings."""
    return _read(name).copy()


def _tables() -> pd.DataFrame:
    """``paper_tables.csv`` with ``value`` as float and repeated (key, value) rows dropped."""
    frame = load_reference("paper_tables.csv")
    frame["value"] = frame["value"].astype(float)
    return frame.drop_duplicates(subset=[*_KEY, "value"]).reset_index(drop=True)


def paper_numbers(paper: str, table: str | None = None, dataset: str | None = None,
                  protocol: str | None = None, method: str | None = None) -> pd.DataFrame:
    """Rows of ``paper_tables.csv`` for ``paper`` (``AFA``, ``USER``, ``MVSEN``), optionally filtered."""
    frame = _tables()
    papers = sorted(frame["paper"].unique())
    if paper not in papers:
        raise KeyError(f"unknown paper {paper!r}; known: {', '.join(papers)}")
    mask = frame["paper"] == paper
    for column, value in (("table", table), ("dataset", dataset), ("protocol", protocol), ("method", method)):
        if value is not None:
            mask &= frame[column] == value
    return frame[mask].reset_index(drop=True)


def paper_row(paper: str, dataset: str, protocol: str, method: str, variant: str = "") -> dict[str, float]:
    """``{metric: value}`` reported by ``paper`` for ``method``/``variant`` on ``dataset``/``protocol``."""
    rows = paper_numbers(paper, dataset=dataset, protocol=protocol, method=method)
    selected = rows[rows["variant"] == variant]
    if selected.empty:
        if rows.empty:
            options = paper_numbers(paper)[["dataset", "protocol", "method"]].drop_duplicates()
            available = "; ".join(f"{d}/{p}/{m}" for d, p, m in options.itertuples(index=False))
            raise KeyError(f"{paper} reports nothing for method {method!r} on {dataset}/{protocol}; "
                           f"available dataset/protocol/method: {available}")
        variants = ", ".join(repr(v) for v in sorted(rows["variant"].unique()))
        raise KeyError(f"{paper} reports {method!r} on {dataset}/{protocol} only for variants {variants}, "
                       f"not {variant!r}")
    conflicts = selected[selected.duplicated("metric", keep=False)]
    if not conflicts.empty:
        found = "; ".join(f"{t} {m}={v}" for t, m, v in
                          conflicts[["table", "metric", "value"]].itertuples(index=False))
        raise ValueError(f"{paper} reports different values for {method!r} {variant!r} on "
                         f"{dataset}/{protocol}: {found}")
    return dict(zip(selected["metric"], selected["value"], strict=True))


DATASET_NAMES: dict[str, str] = {"f30k": "Flickr30K", "coco": "MS-COCO"}
"""Dataset names of ``paper_tables.csv``'s ``dataset`` column in words."""
PAPER_TRAINING: dict[str, str] = {"AFA": "BERT-base, the paper's schedule", "USER": "BERT-base, the paper's schedule"}
"""How each paper trained the models of its tables (a paper not listed: :data:`OWN_TRAINING`)."""
OWN_TRAINING = "the paper's own text encoder and schedule"


def paper_training(paper: str) -> str:
    """The training setting behind ``paper``'s numbers, in words (e.g. ``BERT-base, the paper's schedule``)."""
    return PAPER_TRAINING.get(paper, OWN_TRAINING)


def paper_source(paper: str, dataset: str, protocol: str, method: str, variant: str = "") -> str:
    """Where a reported row is printed: ``"USER paper, Table III"`` (every table printing it, in file order)."""
    frame = load_reference("paper_tables.csv")
    mask = ((frame["paper"] == paper) & (frame["dataset"] == dataset) & (frame["protocol"] == protocol)
            & (frame["method"] == method) & (frame["variant"] == variant))
    tables = list(dict.fromkeys(frame.loc[mask, "table"]))
    if not tables:
        raise KeyError(f"{paper} reports nothing for {method!r} {variant!r} on {dataset}/{protocol}")
    return f"{paper} paper, {' and '.join(tables)}"


def paper_sweep(paper: str, figure: str, parameter: str, metric: str = "rsum") -> pd.DataFrame:
    """Points of a sweep the paper prints: rows of ``paper_tables.csv`` whose ``table`` starts with ``figure``
    (e.g. ``Fig. 3``) and whose ``variant`` is ``<parameter>=<number>``.

    Columns: ``parameter`` (the swept value, float), ``value`` (``metric``), ``dataset``, ``protocol``,
    ``source``. Empty when the paper gives no values (AFA's Fig. 3: only the trend is described).
    """
    frame = _tables()
    pattern = rf"^{re.escape(parameter)}=(-?\d+(?:\.\d+)?)$"
    found = frame["variant"].str.extract(pattern, expand=False)
    mask = ((frame["paper"] == paper) & frame["table"].str.startswith(figure) & (frame["metric"] == metric)
            & found.notna())
    rows = frame[mask]
    return pd.DataFrame({"parameter": found[mask].astype(float).to_numpy(), "value": rows["value"].to_numpy(),
                         "dataset": rows["dataset"].to_numpy(), "protocol": rows["protocol"].to_numpy(),
                         "source": [f"{paper} paper, {t}" for t in rows["table"]]})


def paper_sweep_note(paper: str, figure: str) -> str:
    """What ``paper_sweeps_text.csv`` records about a sweep figure (its ``note``, else its ``values_tested``)."""
    frame = load_reference("paper_sweeps_text.csv")
    rows = frame[(frame["paper"] == paper) & frame["source"].str.startswith(figure)]
    if rows.empty:
        return ""
    row = rows.iloc[0]
    return row["note"] or f"values tested: {row['values_tested']}"
