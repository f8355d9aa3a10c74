"""Ours-vs-paper tables built from evaluation results (``eval-<protocol>.json``), never typed in, and the
captions and figure titles that say what each row is: protocol, data, test images, training budget, source.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import yaml

from itrlib.evaluation.protocols import Protocol, get_protocol
from itrlib.runs.composite import is_composite, load_composite
from itrlib.suite.profiles import get_profile
from itrlib.suite.report.paper import DATASET_NAMES, paper_row, paper_source, paper_training
from itrlib.suite.report.tables import Caption, metrics_frame

Results = Mapping[object, Mapping[str, dict]]
"""``{method or variant label: {protocol: eval result}}``."""
OURS = "itrlib"
"""Prefix of the ``source`` of our rows (``itrlib (<profile>)``); any other source is a paper row."""
_PAPER_PROTOCOLS = {"1k": "1K test", "5fold1k": "5-fold 1K", "5k": "5K"}


def ours_source(data: str = "") -> str:
    """The ``source`` of our rows: ``itrlib (<data>)``, or ``itrlib``."""
    return f"{OURS} ({data})" if data else OURS


def is_ours(table: pd.DataFrame) -> pd.Series:
    """Boolean mask of our rows (``source`` starting with ``itrlib``); a table without ``source`` is all ours."""
    if "source" not in table.columns:
        return pd.Series(True, index=table.index)
    return table["source"].astype(str).str.startswith(OURS)


def images_per_evaluation(result: dict) -> int:
    """Test images ranked per evaluation: ``n_images``, divided by the folds (COCO 5-fold 1K: per fold)."""
    folds = len(result.get("folds", [])) or 1
    return result["n_images"] // folds


def comparison_table(ours: dict[str, dict[str, dict]], paper_methods: Sequence[tuple[str, str, str]] = (),
                     data: str = "") -> pd.DataFrame:
    """Rows per protocol: each of our methods, then each paper-reported ``(paper, method, label)``.

    ``ours`` maps a method label to ``{protocol: eval result}``. ``data`` labels our rows' ``source``
    (``itrlib (<data>)``); a paper row's ``source`` names the paper and table (``USER paper, Table III``).
    ``images`` is the number of test images ranked per evaluation (per fold for coco1k). A paper without the
    row is skipped.
    """
    protocols = list(dict.fromkeys(p for results in ours.values() for p in results))
    rows = []
    for protocol in protocols:
        rows += [{"protocol": protocol, "method": label, "source": ours_source(data),
                  "images": images_per_evaluation(results[protocol]), **results[protocol]["metrics"]}
                 for label, results in ours.items() if protocol in results]
        spec = get_protocol(protocol)
        for paper, method, label in paper_methods:
            row = _paper_row(paper, spec, method, "")
            if row is not None:
                rows.append({"protocol": protocol, "method": label, **row})
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
        rows.append({"variant": label, "source": ours_source(data),
                     "images": images_per_evaluation(results[protocol]), **results[protocol]["metrics"]})
        row = _paper_row(paper, spec, paper_method, paper_variants[label]) if label in paper_variants else None
        if row is not None:
            rows.append({"variant": label, **row})
    return metrics_frame(rows)


def _paper_row(paper: str, spec: Protocol, method: str, variant: str) -> dict | None:
    """``source``, ``images`` and metrics of a reported row on ``spec``; None when the paper lacks it."""
    try:
        numbers = paper_row(paper, spec.paper_dataset, spec.paper_protocol, method, variant)
    except KeyError:
        return None
    source = paper_source(paper, spec.paper_dataset, spec.paper_protocol, method, variant)
    return {"source": source, "images": spec.paper_images, **numbers}


# --- what the rows are: protocol, data, images, training budget, sources ---------------------------------


def protocol_text(protocol: str) -> str:
    """A protocol in words, e.g. ``coco1k = MS-COCO 5-fold 1K (split testall in 5 folds, metrics averaged
    over the folds)``."""
    spec = get_protocol(protocol)
    paper = f"{DATASET_NAMES.get(spec.paper_dataset, spec.paper_dataset)} " \
            f"{_PAPER_PROTOCOLS.get(spec.paper_protocol, spec.paper_protocol)}"
    how = "one evaluation" if spec.folds == 1 else f"cut into {spec.folds} folds, every metric averaged over them"
    return f"{protocol} = {paper} (split {spec.split}, {how})"


def images_text(count: int | Iterable[int], protocol: str) -> str:
    """Test images per evaluation in words: ``1,000`` or ``100 per fold`` (a protocol with folds)."""
    counts = sorted({count} if isinstance(count, int) else set(count))
    text = "/".join(f"{n:,}" for n in counts)
    return f"{text} per fold" if get_protocol(protocol).folds > 1 else text


def read_run_config(run_dir: str | Path) -> dict:
    """The resolved ``config.yaml`` of a run folder as a nested dict."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a table caption reads the training budget from it")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def text_encoder_name(text: Mapping) -> str:
    """The text encoder of a config's ``text`` section: ``MiniLM (all-MiniLM-L6-v2)``, ``BiGRU``, or a BERT
    folder's name with its size when the folder is readable (``bert-base-uncased (12 layers, 768-d)``)."""
    if text.get("encoder") == "bigru":
        return "BiGRU"
    path = str(text.get("bert_path", ""))
    if path == "minilm":
        return "MiniLM (all-MiniLM-L6-v2)"
    name = Path(path).name or path
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        return f"{name} ({config['num_hidden_layers']} layers, {config['hidden_size']}-d, {path})"
    except (OSError, ValueError, KeyError, TypeError):
        return name


def training_budget(run_dir: str | Path) -> str:
    """A run's budget in words: ``4 epochs, batch size 128, text encoder MiniLM (all-MiniLM-L6-v2)``
    (and the step cap of smoke runs); a composite run's is its members' (``members: ...``)."""
    if is_composite(run_dir):
        budgets = dict.fromkeys(training_budget(m) for m in load_composite(run_dir)["members"])
        return f"composite of runs trained {' / '.join(budgets)}"
    config = read_run_config(run_dir)
    train = config["train"]
    encoder = text_encoder_name(config["text"])
    epochs = train["epochs"]
    text = f"{epochs} epoch{'' if epochs == 1 else 's'}, batch size {train['batch_size']}, text encoder {encoder}"
    if train.get("max_steps_per_epoch"):
        text += f", at most {train['max_steps_per_epoch']} steps per epoch"
    return text


def training_schedule(run_dir: str | Path) -> dict:
    """Keyword arguments of :func:`itrlib.suite.report.plots.plot_training_curves` from a run's ``config.yaml``:
    ``hardest_from_epoch`` (``model.mean_warmup_epochs`` when ``model.max_violation``, else None),
    ``lr_decay_epochs`` and ``lr_decay_factor`` (``train.*``). Epochs are 0-based, as in the config."""
    config = read_run_config(run_dir)
    model, train = config["model"], config["train"]
    return {"hardest_from_epoch": model.get("mean_warmup_epochs") if model.get("max_violation") else None,
            "lr_decay_epochs": list(train.get("lr_decay_epochs") or []),
            "lr_decay_factor": float(train.get("lr_decay_factor", 0.1))}


def data_kind(profile: str) -> str:
    """``embedded synthetic data`` for a profile that builds the embedded dataset, else ``real precomp features``."""
    return "embedded synthetic data" if get_profile(profile).synthetic else "real precomp features"


def data_text(profile: str, data_root: str | None = None) -> str:
    """Our rows' data: ``embedded synthetic data (profile smoke, data/synthetic-smoke)`` when the profile
    builds the embedded dataset (``Profile.synth_size``), else ``real precomp features (...)``."""
    kind = data_kind(profile)
    where = f"profile {profile}" + (f", {data_root}" if data_root else "")
    return f"{kind} ({where})"


def _results_of(ours: Results, protocols: Sequence[str]) -> list[dict]:
    """Every eval result of ``ours`` on ``protocols``."""
    return [result for by_protocol in ours.values() for p, result in by_protocol.items() if p in protocols]


def _protocols(table: pd.DataFrame, ours: Results, protocols: Sequence[str] | None) -> list[str]:
    """The protocols a table shows: ``protocols``, else its ``protocol`` column, else every one of ``ours``."""
    if protocols is not None:
        return list(protocols)
    if "protocol" in table.columns:
        return list(dict.fromkeys(table["protocol"]))
    return list(dict.fromkeys(p for by_protocol in ours.values() for p in by_protocol))


def _paper_protocols(table: pd.DataFrame, protocols: Sequence[str]) -> list[str]:
    """The protocols of ``protocols`` on which the table has paper rows."""
    papers = table[~is_ours(table)]
    if "protocol" not in table.columns:
        return list(protocols) if not papers.empty else []
    return [p for p in protocols if (papers["protocol"] == p).any()]


def _budget_text(ours: Results, protocols: Sequence[str]) -> str:
    """Our runs' budgets: one text when all runs share it, else ``label, label: budget`` per budget (the
    labels that share one are named together, in row order)."""

    labels_by_budget: dict[str, list[str]] = {}
    for label, by_protocol in ours.items():
        budget = next((training_budget(r["run"]) for p, r in by_protocol.items() if p in protocols), None)
        if budget is not None:
            labels_by_budget.setdefault(budget, []).append(str(label))
    if len(labels_by_budget) == 1:
        return next(iter(labels_by_budget))
    return "; ".join(f"{', '.join(labels)}: {budget}" for budget, labels in labels_by_budget.items())


def _papers(table: pd.DataFrame) -> list[str]:
    """Papers of the table's paper rows (``AFA`` of ``AFA paper, Table 1``), in row order."""
    return list(dict.fromkeys(s.split(" paper")[0] for s in table.loc[~is_ours(table), "source"]))


def _reference_text(table: pd.DataFrame, protocols: Sequence[str]) -> str:
    """``AFA (f30k1k, coco1k) as reported in the AFA paper, Table 1; ...``: per paper source, its rows'
    labels and protocols."""
    label = "method" if "method" in table.columns else table.columns[0]
    papers = table[~is_ours(table)]
    protocol = papers["protocol"] if "protocol" in papers.columns else pd.Series(protocols[0], papers.index)
    groups: dict[str, tuple[dict, dict]] = {}
    for name, where, source in zip(papers[label], protocol, papers["source"], strict=True):
        names, wheres = groups.setdefault(source, ({}, {}))
        names[str(name)], wheres[str(where)] = None, None
    return "; ".join(f"{', '.join(names)} ({', '.join(wheres)}) as reported in the {source}"
                     for source, (names, wheres) in groups.items())


def table_caption(title: str, ours: Results, table: pd.DataFrame, profile: str, *,
                  protocols: Sequence[str] | None = None, rows: str = "", references: str | None = None) -> Caption:
    """The :class:`Caption` of a table of :func:`comparison_table`/:func:`variant_table` (or any table with a
    ``source`` column): protocol, data of our rows and of the paper rows, test images per evaluation, our
    runs' budget (read from each result's ``run``/``config.yaml``) beside the papers', and each paper row's
    table. ``protocols`` defaults to the table's ``protocol`` column; ``references`` replaces the text drawn
    from the paper rows (e.g. to say why there are none).
    """
    protocols = _protocols(table, ours, protocols)
    with_paper = _paper_protocols(table, protocols)
    results = _results_of(ours, protocols)
    roots = sorted({_shown_path(r["data_root"]) for r in results if r.get("data_root")})
    data = f"itrlib rows: {data_text(profile, ', '.join(roots) or None)}"
    if with_paper:
        datasets = dict.fromkeys(DATASET_NAMES[get_protocol(p).paper_dataset] for p in with_paper)
        data += f"; paper rows: real {' and '.join(datasets)} as printed in the papers"
        if get_profile(profile).synthetic:
            data += " (a scale reference only: synthetic numbers are not comparable with them)"
    images = "; ".join(_images_item(p, ours, p in with_paper) for p in protocols)
    training = f"itrlib rows: {_budget_text(ours, protocols)}"
    if with_paper:
        training += "; paper rows: " + "; ".join(f"{paper}: {paper_training(paper)}" for paper in _papers(table))
    refs = references if references is not None else _reference_text(table, protocols) or "none"
    return Caption(title=title, protocol="; ".join(protocol_text(p) for p in protocols), data=data,
                   images=images, training=training, references=refs, rows=rows)


def _shown_path(path: str | Path) -> str:
    """One spelling per folder: relative to the working directory when inside it, else absolute (runs may
    record ``data/synthetic`` or its absolute form)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(Path.cwd())) if resolved.is_relative_to(Path.cwd()) else str(resolved)


def _images_item(protocol: str, ours: Results, with_paper: bool) -> str:
    """``coco1k: itrlib 100 per fold, paper 1,000 per fold (5 folds averaged)`` (paper part when shown)."""
    counts = [images_per_evaluation(r) for r in _results_of(ours, [protocol])]
    text = f"{protocol}: itrlib {images_text(counts, protocol)}"
    spec = get_protocol(protocol)
    if with_paper:
        text += f", papers {images_text(spec.paper_images, protocol)}"
    return text + (f" ({spec.folds} folds averaged)" if spec.folds > 1 else "")


def ours_title(ours: Results, profile: str, protocols: Sequence[str]) -> str:
    """Figure panel title of our rows, e.g. ``itrlib — embedded synthetic data, 200 test images (f30k1k),
    MiniLM (all-MiniLM-L6-v2), 4 epochs, batch size 128``."""
    kind = data_kind(profile)
    images = ", ".join(f"{images_text([images_per_evaluation(r) for r in _results_of(ours, [p])], p)} ({p})"
                       for p in protocols)
    budget = _budget_text(ours, protocols).replace("text encoder ", "")
    return f"itrlib — {kind} (profile {profile}); test images: {images}; {budget}"


def paper_title(table: pd.DataFrame, protocols: Sequence[str]) -> str:
    """Figure panel title of the paper rows, e.g. ``AFA paper, Table 3 — real Flickr30K, 1,000 test images
    (f30k1k), BERT-base, the paper's schedule``; empty when the table has no paper rows."""
    with_paper = _paper_protocols(table, protocols)
    if not with_paper:
        return ""
    sources = " and ".join(dict.fromkeys(table.loc[~is_ours(table), "source"]))
    datasets = " and ".join(dict.fromkeys(DATASET_NAMES[get_protocol(p).paper_dataset] for p in with_paper))
    images = ", ".join(f"{images_text(get_protocol(p).paper_images, p)} ({p})" for p in with_paper)
    training = "; ".join(dict.fromkeys(paper_training(paper) for paper in _papers(table)))
    return f"{sources} — real {datasets}; test images: {images}; {training}"
