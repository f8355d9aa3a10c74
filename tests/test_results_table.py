"""Ours-vs-paper tables: our rows come from evaluation results, paper rows from the packaged CSV, and the
caption says protocol, data, test images per evaluation, training budget and each paper row's table."""

import re

import pytest
import yaml

from itrlib.suite.report.results import (
    comparison_table,
    is_ours,
    ours_title,
    paper_title,
    table_caption,
    training_budget,
    training_schedule,
    variant_table,
)
from itrlib.suite.report.tables import Caption


def _run(tmp_path, name="run", epochs=4, batch_size=128, bert_path="minilm", encoder="bert"):
    """A run folder holding only the ``config.yaml`` the captions read."""
    run = tmp_path / name
    run.mkdir(parents=True, exist_ok=True)
    config = {"name": name, "model": {"name": "vse", "max_violation": True, "mean_warmup_epochs": 1},
              "text": {"encoder": encoder, "bert_path": bert_path},
              "train": {"epochs": epochs, "batch_size": batch_size, "lr_decay_epochs": [3], "lr_decay_factor": 0.1,
                        "max_steps_per_epoch": None}}
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return run


def _result(n_images, folds, r1, run="outputs/runs/x", data_root="data/synthetic"):
    metrics = {"i2t_r1": r1, "i2t_r5": 20, "i2t_r10": 30, "t2i_r1": 5, "t2i_r5": 6, "t2i_r10": 7, "rsum": r1 + 68}
    return {"n_images": n_images, "folds": [{}] * folds if folds > 1 else [], "metrics": metrics, "run": str(run),
            "data_root": data_root}


@pytest.fixture
def ours(tmp_path):
    afa, vse = _run(tmp_path, "afa"), _run(tmp_path, "vse")
    return {"AFA": {"f30k1k": _result(200, 1, 30.0, afa), "coco1k": _result(500, 5, 10.04, afa)},
            "VSE∞": {"f30k1k": _result(200, 1, 31.0, vse), "coco1k": _result(500, 5, 9.0, vse)}}


PAPERS = [("USER", "VSE∞", "VSE∞"), ("USER", "no such", "x"), ("AFA", "Ours", "AFA")]


def test_comparison_table_rows_and_images(ours):
    table = comparison_table({"AFA": {"coco1k": ours["AFA"]["coco1k"]}, "VSE∞": {"coco1k": ours["VSE∞"]["coco1k"]}},
                             PAPERS, data="embedded")
    assert list(table["method"]) == ["AFA", "VSE∞", "VSE∞", "AFA"]
    assert list(table["source"]) == ["itrlib (embedded)"] * 2 + ["USER paper, Table I", "AFA paper, Table 1"]
    assert list(table["images"]) == [100, 100, 1000, 1000]  # coco1k: per fold (500 images in 5 folds)
    assert table.iloc[0]["i2t R@1"] == 10.0
    assert table.iloc[2]["rSum"] == 523.3  # USER Table I, VSE∞ on COCO 5-fold 1K
    assert table.iloc[3]["rSum"] == 526.1  # AFA Table 1, COCO 5-fold 1K


def test_every_paper_row_names_its_paper_and_table(ours):
    table = comparison_table(ours, PAPERS, data="embedded")
    sources = table.loc[~is_ours(table), "source"]
    assert len(sources) == 4
    assert all(re.fullmatch(r"(AFA|USER) paper, (Table [0-9IVX]+|Fig\. \d.*)", s) for s in sources), list(sources)
    assert set(sources) == {"USER paper, Table III", "USER paper, Table I", "AFA paper, Table 1"}


def test_variant_table_pairs_each_variant_with_the_paper_row(tmp_path):
    run = _run(tmp_path)
    ours = {"I": {"f30k1k": _result(200, 1, 30.0, run)}, "I+II": {"f30k1k": _result(200, 1, 31.0, run)}}
    table = variant_table(ours, "f30k1k", "AFA", "Ours", {"I": "I", "I+II": "I+II"}, data="embedded")
    assert list(table["variant"]) == ["I", "I", "I+II", "I+II"]
    assert list(table["source"]) == ["itrlib (embedded)", "AFA paper, Table 3"] * 2
    assert table.iloc[1]["rSum"] == 474.9 and table.iloc[3]["rSum"] == 492.4  # AFA Table 3
    caption = table_caption("Table 3", ours, table, "embedded", protocols=["f30k1k"], rows="(I) MLP ...")
    assert "I, I+II (f30k1k) as reported in the AFA paper, Table 3" in caption.references
    assert caption.rows == "(I) MLP ..."


def test_caption_has_every_required_item(ours):
    table = comparison_table(ours, PAPERS, data="embedded")
    caption = table_caption("AFA beside the papers", ours, table, "embedded")
    assert isinstance(caption, Caption)
    assert "f30k1k = Flickr30K 1K test" in caption.protocol and "coco1k = MS-COCO 5-fold 1K" in caption.protocol
    assert "embedded synthetic data" in caption.data and "data/synthetic" in caption.data
    assert "paper rows: real Flickr30K and MS-COCO" in caption.data
    assert "4 epochs" in caption.training and "batch size 128" in caption.training
    assert "MiniLM" in caption.training and "AFA: BERT-base" in caption.training
    assert "VSE∞ (f30k1k) as reported in the USER paper, Table III" in caption.references
    assert "VSE∞ (coco1k) as reported in the USER paper, Table I" in caption.references
    assert "AFA (f30k1k, coco1k) as reported in the AFA paper, Table 1" in caption.references
    text = caption.text()
    for item in (caption.protocol, caption.data, caption.images, caption.training, caption.references):
        assert item in text


def test_coco1k_images_are_per_fold(ours):
    table = comparison_table(ours, PAPERS, data="embedded")
    images = table_caption("t", ours, table, "embedded").images
    assert "f30k1k: itrlib 200, papers 1,000" in images
    assert "coco1k: itrlib 100 per fold, papers 1,000 per fold (5 folds averaged)" in images
    assert list(table.loc[table["protocol"] == "coco1k", "images"]) == [100, 100, 1000, 1000]


def test_caption_of_real_data_and_of_a_table_without_paper_rows(tmp_path):
    run = _run(tmp_path, bert_path="/models/bert-base-uncased")
    ours = {"VSE∞": {"f30k1k": _result(1000, 1, 80.0, run, data_root="/data/f30k_precomp")}}
    table = comparison_table(ours, [], data="f30k")
    caption = table_caption("t", ours, table, "f30k")
    assert caption.data == "itrlib rows: real precomp features (profile f30k, /data/f30k_precomp)"
    assert "bert-base-uncased" in caption.training and "paper rows" not in caption.training
    assert caption.references == "none"
    assert paper_title(table, ["f30k1k"]) == ""


def test_budgets_that_differ_are_given_once_per_budget_with_the_methods_sharing_it(tmp_path):
    ours = {"a": {"f30k1k": _result(200, 1, 1.0, _run(tmp_path, "a", epochs=4))},
            "b": {"f30k1k": _result(200, 1, 1.0, _run(tmp_path, "b", epochs=8, encoder="bigru"))},
            "c": {"f30k1k": _result(200, 1, 1.0, _run(tmp_path, "c", epochs=4))}}
    budget = table_caption("t", ours, comparison_table(ours), "embedded").training
    assert budget == ("itrlib rows: a, c: 4 epochs, batch size 128, text encoder MiniLM (all-MiniLM-L6-v2); "
                      "b: 8 epochs, batch size 128, text encoder BiGRU")


def test_panel_titles_name_data_images_encoder_and_budget(ours):
    table = comparison_table(ours, PAPERS, data="embedded")
    mine = ours_title(ours, "embedded", ["f30k1k", "coco1k"])
    assert mine.startswith("itrlib — embedded synthetic data")
    assert "200 (f30k1k), 100 per fold (coco1k)" in mine and "MiniLM" in mine and "4 epochs" in mine
    theirs = paper_title(table, ["f30k1k", "coco1k"])
    assert "real Flickr30K and MS-COCO" in theirs and "1,000 per fold (coco1k)" in theirs
    assert "USER paper, Table III" in theirs and "BERT-base" in theirs


def test_training_budget_and_schedule_read_config_yaml(tmp_path):
    run = _run(tmp_path)
    assert training_budget(run) == "4 epochs, batch size 128, text encoder MiniLM (all-MiniLM-L6-v2)"
    assert training_schedule(run) == {"hardest_from_epoch": 1, "lr_decay_epochs": [3], "lr_decay_factor": 0.1}
    with pytest.raises(FileNotFoundError, match="training budget"):
        training_budget(tmp_path / "missing")


def test_text_encoder_is_named_with_its_size_when_the_folder_is_readable(tmp_path):
    import json

    from itrlib.suite.report.results import text_encoder_name

    folder = tmp_path / "bert-base-uncased"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 12, "hidden_size": 768}))
    assert text_encoder_name({"bert_path": str(folder)}) == f"bert-base-uncased (12 layers, 768-d, {folder})"
    assert text_encoder_name({"bert_path": "/absent/bert-base-uncased"}) == "bert-base-uncased"
    assert text_encoder_name({"bert_path": "minilm"}) == "MiniLM (all-MiniLM-L6-v2)"
    assert text_encoder_name({"encoder": "bigru", "bert_path": "minilm"}) == "BiGRU"


def test_caption_names_a_data_folder_once_whatever_its_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _run(tmp_path)
    ours = {"a": {"f30k1k": _result(200, 1, 1.0, run, data_root="data/synthetic")},
            "b": {"f30k1k": _result(200, 1, 1.0, run, data_root=str(tmp_path / "data/synthetic"))},
            "c": {"f30k1k": _result(200, 1, 1.0, run, data_root="/elsewhere/../data/real")}}
    caption = table_caption("t", ours, comparison_table(ours), "embedded")
    assert caption.data.endswith("/data/real, data/synthetic)"), caption.data
