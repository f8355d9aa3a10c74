"""Official USER / VSE∞ checkpoints: conversion to the suite's models and ``eval --checkpoint``.

``fixtures/official_layout.json`` was recorded once from the official modules (zhangy0822/USER ``lib/encoders.py``
``EncoderImageAggr`` / ``EncoderText``; the VSE∞ layout is the same image encoder without its ``v_sa``
submodule) at a small size: the (name, shape, dtype) of every entry of their state dicts and the embeddings
they computed, in eval mode, for the inputs of :func:`official_inputs` with the weights of
:func:`official_weights`. These tests never read the official code: they regenerate the same weights,
convert them and compare our embeddings with the recorded ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from itrlib.cli import main
from itrlib.errors import ItrlibError
from itrlib.runs.official import convert_state_dict, load_official_model

FIXTURE = Path(__file__).parent / "fixtures" / "official_layout.json"
TOLERANCE = 1e-5
SEEDS = {"vse": 11, "user": 12}
"""Seed of :func:`official_weights` per architecture (the recording used the same)."""
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "of", "on", "in", "with", "and", "is", "to",
         "red", "blue", "green", "small", "large", "man", "woman", "dog", "cat", "table", "car", "tree"]


def _layout() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def official_weights(layout: list[list], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic weights for an official state-dict layout [[name, shape, dtype], ...] (in that order).

    Matrices: N(0, 1/fan_in); 1-d ``.weight`` (norm scales): 1 + N(0, 0.2^2); other vectors and running means:
    N(0, 0.2^2); running variances U[0.5, 1.5); BatchNorm counters 7; ``position_ids`` 0..L-1.
    """
    gen = torch.Generator().manual_seed(seed)
    weights: dict[str, torch.Tensor] = {}
    for name, shape, dtype in layout:
        if dtype == "int64":
            weights[name] = (torch.arange(shape[-1]).expand(*shape).clone() if name.endswith("position_ids")
                             else torch.full(shape, 7, dtype=torch.long))
        elif name.endswith("running_var"):
            weights[name] = torch.rand(shape, generator=gen) + 0.5
        elif len(shape) >= 2:
            weights[name] = torch.randn(shape, generator=gen) * shape[-1] ** -0.5
        elif name.endswith(".weight") and "running" not in name:
            weights[name] = 1.0 + 0.2 * torch.randn(shape, generator=gen)
        else:
            weights[name] = 0.2 * torch.randn(shape, generator=gen)
    return weights


def official_inputs(config: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """images (B, K, D), image lengths (B,), caption ids (B, L) zero-padded, caption lengths (B,).

    VSE∞ images have fewer valid regions in some rows (zero-padded); USER's SGE reads all K regions,
    so its caller passes full lengths.
    """
    gen = torch.Generator().manual_seed(config["input_seed"])
    images = torch.randn(len(config["image_lengths"]), config["n_regions"], config["img_dim"], generator=gen)
    image_lengths = torch.tensor(config["image_lengths"])
    for row, length in enumerate(config["image_lengths"]):
        images[row, length:] = 0.0
    caption_lengths = torch.tensor(config["caption_lengths"])
    ids = torch.randint(5, config["bert"]["vocab_size"], (len(caption_lengths), int(caption_lengths.max())),
                        generator=gen)
    ids[:, 0] = 2
    for row, length in enumerate(config["caption_lengths"]):
        ids[row, length - 1] = 3
        ids[row, length:] = 0
    return images, image_lengths, ids, caption_lengths


def _official_parts(arch: str) -> list[dict[str, torch.Tensor]]:
    """[image encoder state dict, text encoder state dict] in the official layout."""
    layout = _layout()
    image = official_weights(layout["layouts"][arch]["image"], SEEDS[arch])
    text = official_weights(layout["layouts"][arch]["text"], SEEDS[arch] + 100)
    return [image, text]


def _opt(arch: str) -> argparse.Namespace:
    config = _layout()["config"]
    return argparse.Namespace(img_dim=config["img_dim"], embed_size=config["embed_size"], precomp_enc_type="basic",
                              no_imgnorm=False, no_txtnorm=False, attention_lamda=1.0, data_name="f30k_precomp",
                              use_moco=arch == "user")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A local BERT folder with the recorded tiny config (its weights are overwritten by every checkpoint)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(**_layout()["config"]["bert"])).save_pretrained(folder)
    vocab = folder / "vocab.txt"
    vocab.write_text("".join(f"{word}\n" for word in VOCAB), encoding="utf-8")
    BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("arch", ["vse", "user"])
def test_converted_model_matches_recorded_official_embeddings(arch, tiny_bert):
    recorded = _layout()
    config = recorded["config"]
    model = load_official_model(arch, {"model": _official_parts(arch), "opt": _opt(arch)}, bert_path=str(tiny_bert),
                                feature_dim=config["img_dim"]).model
    images, image_lengths, ids, caption_lengths = official_inputs(config)
    if arch == "user":
        image_lengths = torch.full_like(image_lengths, config["n_regions"])
    with torch.no_grad():
        ours = {"images": model.encode_images(images, image_lengths),
                "captions": model.encode_captions(ids, caption_lengths)}
    for side, values in ours.items():
        expected = torch.tensor(recorded["embeddings"][arch][side])
        assert values.shape == expected.shape, side
        delta = (values - expected).abs().max().item()
        print(f"{arch} {side}: max |delta| = {delta:.3g}")
        assert delta <= TOLERANCE, (arch, side, delta)


def test_convert_maps_every_official_name():
    image, text = _official_parts("user")
    converted = convert_state_dict("user", [image, text])
    assert len(converted) == len(image) + len(text) - sum(k.startswith("mlp.bns.1.") for k in image)
    assert converted["image_encoder.enhance.local_bn.running_var"] is image["v_sa.embedding_local.1.running_var"]
    assert converted["image_encoder.proj.mlp.norms.0.weight"] is image["mlp.bns.0.weight"]
    assert converted["text_encoder.tokens.linear.weight"] is text["linear.weight"]
    vse = convert_state_dict("vse", _official_parts("vse"))
    assert {"region_proj.mlp.linears.1.bias", "image_pool.linear.weight", "text_encoder.bert.pooler.dense.bias",
            "text_pool.gru.weight_hh_l0_reverse"} <= set(vse)


def test_dataparallel_prefix_flat_dict_and_position_ids(tiny_bert):
    image, text = _official_parts("vse")
    flat = {**{f"img_enc.module.{k}": v for k, v in image.items()},
            **{f"txt_enc.module.{k}": v for k, v in text.items()}}
    flat["txt_enc.module.bert.embeddings.position_ids"] = torch.arange(64).unsqueeze(0)  # older transformers
    assert convert_state_dict("vse", flat).keys() == convert_state_dict("vse", [image, text]).keys()
    load_official_model("vse", flat, bert_path=str(tiny_bert), feature_dim=_layout()["config"]["img_dim"])


def test_missing_and_unexpected_keys_are_named(tiny_bert):
    image, text = _official_parts("user")
    del image["gpool.linear.weight"]
    with pytest.raises(ItrlibError, match=r"image_encoder\.pool\.linear\.weight"):
        load_official_model("user", [image, text], bert_path=str(tiny_bert), feature_dim=_layout()["config"]["img_dim"])
    image, text = _official_parts("user")
    text["extra.weight"] = torch.zeros(1)
    with pytest.raises(ItrlibError, match=r"extra\.weight"):
        convert_state_dict("user", [image, text])


def test_wrong_arch_is_named():
    with pytest.raises(ItrlibError, match="--arch user"):
        convert_state_dict("vse", _official_parts("user"))
    with pytest.raises(ItrlibError, match="--arch vse"):
        convert_state_dict("user", _official_parts("vse"))
    with pytest.raises(ItrlibError, match="arch"):
        convert_state_dict("afa", _official_parts("vse"))


@pytest.mark.parametrize("arch", ["user", "vse"])
def test_cli_eval_official_checkpoint(arch, tiny_bert, smoke_data, tmp_path, capsys):
    path = tmp_path / "official.pth"
    torch.save({"model": _official_parts(arch), "opt": _opt(arch), "epoch": 3, "best_rsum": 123.4}, path)
    out = tmp_path / "eval.json"
    argv = ["eval-official", "--checkpoint", str(path), "--arch", arch, "--data-root", str(smoke_data),
            "--bert-path", str(tiny_bert),
            "--protocol", "f30k1k", "--device", "cpu", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert 0.0 <= printed["f30k1k"]["rsum"] <= 600.0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["f30k1k"]["metrics"]["rsum"] == printed["f30k1k"]["rsum"]
    assert written["f30k1k"]["arch"] == arch and written["f30k1k"]["checkpoint_epoch"] == 3


def test_cli_eval_takes_a_run_and_eval_official_a_checkpoint_file(tmp_path, capsys):
    """Two commands, each with its own options: a run folder's checkpoint is best or last, an official one a file."""
    with pytest.raises(SystemExit):
        main(["eval", "--run", str(tmp_path), "--arch", "vse", "--protocol", "f30k1k"])
    assert "unrecognized arguments: --arch vse" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval-official", "--arch", "vse", "--protocol", "f30k1k"])
    err = capsys.readouterr().err
    assert all(flag in err for flag in ("--checkpoint", "--data-root", "--bert-path")), err
    with pytest.raises(SystemExit):
        main(["eval", "--run", str(tmp_path), "--protocol", "f30k1k", "--checkpoint", "x.pth"])
    assert "invalid choice: 'x.pth'" in capsys.readouterr().err
