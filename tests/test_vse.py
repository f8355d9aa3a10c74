"""VSE∞ model: shapes, normalisation, optimiser groups, the sum-loss warm-up switch."""

import math

import pytest
import torch

from itrlib.config import TextConfig
from itrlib.data.collate import pad_sequences
from itrlib.data.text import BertWordPieceTokenizer, resolve_bert_path
from itrlib.losses.triplet import triplet_loss
from itrlib.models.vse import VSEConfig, build_vse
from itrlib.nn.mlp import ResidualProjection


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    tokenizer = BertWordPieceTokenizer(resolve_bert_path("minilm"))
    return build_vse(VSEConfig(embed_size=48, mean_warmup_epochs=1), feature_dim=20, text=TextConfig(),
                     tokenizer=tokenizer), tokenizer


def _captions(tokenizer, texts):
    return pad_sequences([tokenizer.encode(t) for t in texts], tokenizer.pad_id)


def test_embeddings_are_unit_vectors_and_scores_are_cosines(model):
    vse, tokenizer = model
    vse.eval()
    images = torch.rand(3, 36, 20)
    img = vse.encode_images(images, torch.tensor([36, 20, 5]))
    cap = vse.encode_captions(*_captions(tokenizer, ["a red dog", "two people on a beach", "a car"]))
    assert img.shape == (3, 48) and cap.shape == (3, 48)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(vse.score(img, cap), img @ cap.T)


def test_padding_of_captions_does_not_change_embeddings(model):
    vse, tokenizer = model
    vse.eval()
    ids, lengths = _captions(tokenizer, ["a dog", "a very long caption about a dog on a beach"])
    alone = vse.encode_captions(*_captions(tokenizer, ["a dog"]))
    torch.testing.assert_close(vse.encode_captions(ids, lengths)[:1], alone, atol=1e-5, rtol=1e-5)


def test_param_groups_put_bert_at_a_tenth(model):
    vse, _ = model
    groups = {g["name"]: g for g in vse.param_groups(1e-3)}
    assert math.isclose(groups["bert"]["lr"], 1e-4) and groups["image"]["lr"] == 1e-3
    n_params = sum(len(g["params"]) for g in groups.values())
    assert n_params == len(list(vse.parameters()))
    assert {id(p) for p in groups["bert"]["params"]} == {id(p) for p in vse.text_encoder.bert.parameters()}


def test_warm_up_uses_the_sum_loss_then_hardest_negatives(model, monkeypatch):
    vse, _ = model
    calls = []
    monkeypatch.setattr("itrlib.models.vse.triplet_loss",
                        lambda s, m, hardest: calls.append(hardest) or triplet_loss(s, m, hardest))
    batch = type("B", (), {})()
    batch.images, batch.image_lengths = torch.rand(4, 36, 20), torch.full((4,), 36)
    batch.captions, batch.caption_lengths = _captions(model[1], ["a", "b c", "d e f", "g"])
    batch.extras = {}
    for epoch in (0, 1, 5):
        vse.on_epoch_start(epoch)
        assert set(vse.losses(batch)) == {"triplet"}
    assert calls == [False, True, True]


@pytest.mark.parametrize("name", ["vse", "afa"])
def test_max_violation_false_keeps_the_sum_over_negatives(name):
    from itrlib.models import build_model, model_config_class

    config = model_config_class(name)(embed_size=16, max_violation=False, mean_warmup_epochs=1)
    built = build_model(config, feature_dim=8, text=TextConfig(),
                        tokenizer=BertWordPieceTokenizer(resolve_bert_path("minilm")))
    for epoch in (0, 1, 5):
        built.on_epoch_start(epoch)
        assert built.hardest is False
    config.max_violation = True
    built.on_epoch_start(1)
    assert built.hardest is True


def test_residual_projection_is_fc_plus_mlp_with_xavier_fc():
    torch.manual_seed(0)
    proj = ResidualProjection(30, 16)
    bound = math.sqrt(6 / (30 + 16))
    assert proj.fc.weight.abs().max() <= bound and proj.fc.bias.abs().max() == 0
    proj.eval()
    x = torch.rand(2, 5, 30)
    expected = proj.fc(x) + proj.mlp.linears[1](torch.relu(proj.mlp.norms[0](proj.mlp.linears[0](x.reshape(10, 30))))
                                                ).reshape(2, 5, 16)
    torch.testing.assert_close(proj(x), expected)
