"""Ours-vs-paper tables built from evaluation results (``eval-<protocol>.json``), never typed in."""

from __future__ import annotations

import pandas as pd

from itrlib.evaluation.protocols import get_protocol
from itrlib.report.paper import paper_row
from itrlib.report.tables import metrics_frame


def comparison_table(ours: dict[str, dict[str, dict]], paper_methods: list[tuple[str, str, str]] = (),
                     data: str = "") -> pd.DataFrame:
    """Rows per protocol: each of our methods, then each paper-reported ``(paper, method, label)``.

    ``ours`` maps a method label to ``{protocol: eval result}``. ``data`` labels our rows (e.g.
    ``embedded``: paper numbers on real data are then only a scale reference). ``images`` is the number
    of test images ranked per evaluation (per fold for coco1k). A paper without the row is skipped.
    """
    protocols = list(dict.fromkeys(p for results in ours.values() for p in results))
    rows = []
    for protocol in protocols:
        for label, results in ours.items():
            if protocol not in results:
                continue
            result = results[protocol]
            folds = len(result.get("folds", [])) or 1
            rows.append({"protocol": protocol, "method": label, "source": f"itrlib ({data})" if data else "itrlib",
                         "images": result["n_images"] // folds, **result["metrics"]})
        spec = get_protocol(protocol)
        for paper, method, label in paper_methods:
            try:
                numbers = paper_row(paper, spec.paper_dataset, spec.paper_protocol, method)
            except KeyError:
                continue
            rows.append({"protocol": protocol, "method": label, "source": f"{paper} paper",
                         "images": spec.paper_images, **numbers})
    return metrics_frame(rows)


def variant_table(ours: dict[str, dict[str, dict]], protocol: str, paper: str, paper_method: str,
                  paper_variants: dict[str, str], data: str = "") -> pd.DataFrame:
    """Ablation rows on one protocol: each variant of ours beside the paper's row of the same variant.

    ``ours`` maps a variant label to ``{protocol: eval result}``; ``paper_variants`` maps the same label to
    the variant string in ``paper_tables.csv`` (e.g. ``"I+II"``). Missing paper rows are left out.
    """
    spec = get_protocol(protocol)
    rows = []
    for label, results in ours.items():
        result = results[protocol]
        folds = len(result.get("folds", [])) or 1
        rows.append({"variant": label, "source": f"itrlib ({data})" if data else "itrlib",
                     "images": result["n_images"] // folds, **result["metrics"]})
        if label in paper_variants:
            try:
                numbers = paper_row(paper, spec.paper_dataset, spec.paper_protocol, paper_method,
                                    paper_variants[label])
            except KeyError:
                continue
            rows.append({"variant": label, "source": f"{paper} paper", "images": spec.paper_images,
                         **numbers})
    return metrics_frame(rows)
