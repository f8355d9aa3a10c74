"""Ours-vs-paper tables built from evaluation results (``eval-<protocol>.json``), never typed in."""

from __future__ import annotations

import pandas as pd

from itrlib.report.paper import paper_row
from itrlib.report.tables import metrics_frame

# protocol name in itrlib -> (dataset, protocol) as written in paper_tables.csv
PAPER_PROTOCOLS = {"f30k1k": ("f30k", "1k"), "coco1k": ("coco", "5fold1k"), "coco5k": ("coco", "5k")}
PAPER_IMAGES = {"f30k1k": 1000, "coco1k": 1000, "coco5k": 5000}  # test images per evaluation (per fold)


def comparison_table(results: dict[str, dict], ours: str, paper_methods: list[tuple[str, str]] = (),
                     data: str = "") -> pd.DataFrame:
    """Rows: for each protocol, our result then each ``(paper, method)`` the paper reports for it.

    ``images`` is the number of test images ranked per evaluation (per fold for coco1k).
    ``results`` maps a protocol name to an evaluation result (``{"metrics": {...}}``); ``data`` labels
    our rows (e.g. ``embedded``), since paper numbers on real data are only a scale reference there.
    """
    rows = []
    for protocol, result in results.items():
        folds = len(result.get("folds", [])) or 1
        rows.append({"protocol": protocol, "method": ours, "source": f"itrlib ({data})" if data else "itrlib",
                     "images": result["n_images"] // folds, **result["metrics"]})
        dataset, paper_protocol = PAPER_PROTOCOLS[protocol]
        for paper, method in paper_methods:
            try:
                numbers = paper_row(paper, dataset, paper_protocol, method)
            except KeyError:
                continue
            rows.append({"protocol": protocol, "method": method, "source": f"{paper} paper",
                         "images": PAPER_IMAGES[protocol], **numbers})
    return metrics_frame(rows)
