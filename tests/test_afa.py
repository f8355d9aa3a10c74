"""AFA model and loss: eq. 5-7 against brute force, Table 3 switches, eval-time determinism."""

import dataclasses

import pytest
import torch

from itrlib.config import TextConfig
from itrlib.data.text import BertWordPieceTokenizer, resolve_bert_path
from itrlib.errors import ConfigError
from itrlib.losses.harder_negatives import harder_negative_loss, mix_modalities
from itrlib.losses.triplet import triplet_loss
from itrlib.models.afa import AFAConfig, build_afa
from itrlib.nn.afa_aggregation import masked_max


def brute_force_eq7_mixed_terms(img, cap, l1, l2, margin, positive="real"):
    """Terms 3-4 of eq. 7 with loops: hardest mixed negative per anchor; positive S_ii (real) or G_ii."""
    b = len(img)
    cos = torch.nn.functional.cosine_similarity
    vg = [l1[i] * img[i] + (1 - l1[i]) * cap[i] for i in range(b)]
    tg = [l2[i] * cap[i] + (1 - l2[i]) * img[i] for i in range(b)]
    total = 0.0
    for i in range(b):
        s_ii = cos(img[i], cap[i], dim=0).item() if positive == "real" else cos(vg[i], tg[i], dim=0).item()
        total += max(0.0, margin - s_ii + max(cos(vg[i], tg[j], dim=0).item() for j in range(b) if j != i))
        total += max(0.0, margin - s_ii + max(cos(vg[j], tg[i], dim=0).item() for j in range(b) if j != i))
    return total


@pytest.mark.parametrize("positive", ["real", "mixed"])
def test_harder_negative_terms_match_brute_force(positive):
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    cap = torch.nn.functional.normalize(img + 0.5 * torch.randn(6, 8), dim=1)
    l1, l2 = torch.rand(6), torch.rand(6)
    expected = brute_force_eq7_mixed_terms(img, cap, l1, l2, 0.2, positive)
    got = harder_negative_loss(img, cap, l1, l2, 0.2, hardest=True, positive=positive).item()
    assert got == pytest.approx(expected, abs=1e-5)


def test_mixed_and_real_positives_differ_and_unknown_one_is_refused():
    torch.manual_seed(2)
    img = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    cap = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    l1, l2 = torch.full((6,), 0.5), torch.full((6,), 0.5)
    real = harder_negative_loss(img, cap, l1, l2, 0.2, True, "real")
    mixed = harder_negative_loss(img, cap, l1, l2, 0.2, True, "mixed")
    assert real.item() != pytest.approx(mixed.item())
    with pytest.raises(ValueError, match="positive"):
        harder_negative_loss(img, cap, l1, l2, 0.2, True, "both")
    with pytest.raises(ConfigError, match="mixed_positive"):
        AFAConfig(mixed_positive="Mixed").validate()


def test_unmixed_weights_reduce_to_the_triplet_terms_with_alpha2():
    torch.manual_seed(1)
    img = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    cap = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    ones = torch.ones(5)
    mixed_img, mixed_cap = mix_modalities(img, cap, ones, ones)
    torch.testing.assert_close(mixed_img, img)
    torch.testing.assert_close(mixed_cap, cap)
    assert harder_negative_loss(img, cap, ones, ones, 0.3, True).item() == pytest.approx(
        triplet_loss(img @ cap.T, 0.3, True).item(), abs=1e-6)


@pytest.fixture(scope="module")
def tokenizer():
    return BertWordPieceTokenizer(resolve_bert_path("minilm"))


def _model(tokenizer, **changes):
    torch.manual_seed(0)
    config = dataclasses.replace(AFAConfig(embed_size=32, mean_warmup_epochs=0), **changes)
    config.validate()
    return build_afa(config, feature_dim=12, text=TextConfig(), tokenizer=tokenizer)


def _batch(tokenizer, b=4):
    ids = [tokenizer.encode(t) for t in ["a red dog", "two people on a beach", "a car", "an old man eating"][:b]]
    lengths = torch.tensor([len(x) for x in ids])
    captions = torch.zeros(b, int(lengths.max()), dtype=torch.long)
    for i, x in enumerate(ids):
        captions[i, : len(x)] = torch.tensor(x)
    batch = type("Batch", (), {})()
    batch.images, batch.image_lengths = torch.rand(b, 36, 12), torch.tensor([36, 30, 20, 36])[:b]
    batch.captions, batch.caption_lengths, batch.extras = captions, lengths, {}
    return batch


def test_switches_change_only_their_part(tokenizer):
    batch = _batch(tokenizer)
    full = _model(tokenizer)
    torch.manual_seed(5)
    losses = full.losses(batch)
    assert set(losses) == {"triplet", "harder_negatives"}
    no_mix = _model(tokenizer, harder_negatives=False)
    torch.manual_seed(5)
    only_triplet = no_mix.losses(batch)
    assert set(only_triplet) == {"triplet"}
    torch.testing.assert_close(only_triplet["triplet"], losses["triplet"])  # same encoders, same shuffle

    full.eval()
    no_agg = _model(tokenizer, aggregation=False).eval()
    mean_pool = _model(tokenizer, aggregation=False, pooling="mean").eval()
    tokens = no_agg.image_mlp(batch.images)  # fresh BN statistics, unlike full (trained one step)
    torch.testing.assert_close(no_agg.encode_images(batch.images, batch.image_lengths),
                               torch.nn.functional.normalize(masked_max(tokens, batch.image_lengths), dim=1))
    assert not torch.allclose(mean_pool.encode_images(batch.images, batch.image_lengths),
                              no_agg.encode_images(batch.images, batch.image_lengths))
    assert not torch.allclose(full.encode_images(batch.images, batch.image_lengths),
                              no_agg.encode_images(batch.images, batch.image_lengths))


def test_eval_embeddings_are_reproducible_and_batch_independent(tokenizer):
    model = _model(tokenizer).eval()
    batch = _batch(tokenizer)
    with torch.no_grad():
        a = model.encode_captions(batch.captions, batch.caption_lengths)
        b = model.encode_captions(batch.captions, batch.caption_lengths)
        alone = model.encode_captions(batch.captions[2:3, : batch.caption_lengths[2]], batch.caption_lengths[2:3])
        img = model.encode_images(batch.images, batch.image_lengths)
        img_alone = model.encode_images(batch.images[1:2], batch.image_lengths[1:2])
    assert torch.equal(a, b)
    torch.testing.assert_close(alone, a[2:3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(img_alone, img[1:2], atol=1e-5, rtol=1e-5)


def test_gradients_reach_both_mlps_and_the_text_encoder(tokenizer):
    model = _model(tokenizer)
    total = sum(model.losses(_batch(tokenizer)).values())
    total.backward()
    for module in (model.image_mlp, model.text_mlp, model.text_encoder.bert):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_afa_config_validation():
    with pytest.raises(ConfigError, match="pooling"):
        AFAConfig(pooling="avg").validate()
    with pytest.raises(ConfigError, match="merge_ratio"):
        AFAConfig(merge_ratio=0.7).validate()


def test_afa_trains_through_the_shared_engine(smoke_data, tmp_path, fast_config):
    from itrlib.engine.trainer import Trainer
    from itrlib.io import read_jsonl

    summary = Trainer(fast_config(smoke_data, tmp_path, "afa", "model.name=afa", "train.epochs=1"),
                      progress=False).fit()
    assert summary["best_epoch"] == 0
    steps = [r for r in read_jsonl(tmp_path / "afa" / "metrics.jsonl") if r["event"] == "step"]
    assert steps and all({"triplet", "harder_negatives", "loss"} <= set(r) for r in steps)
