"""USER model: one training step's order (query, momentum update, keys, loss, enqueue), optimiser groups,
Table IV switches, config errors, CGE's side input, and a killed USER run resuming bit-exactly."""

import dataclasses

import pytest
import torch

from itrlib.config import TextConfig, load_config
from itrlib.data.collate import Batch
from itrlib.data.text import BertWordPieceTokenizer, resolve_bert_path
from itrlib.engine.trainer import TIMING_KEYS, Trainer
from itrlib.errors import ConfigError
from itrlib.io import read_jsonl
from itrlib.losses.uto import uto_loss
from itrlib.models.user import ABLATION_ROWS, USERConfig, build_user

B, K, D = 4, 36, 20


@pytest.fixture(scope="module")
def tokenizer():
    return BertWordPieceTokenizer(resolve_bert_path("minilm"))


def _model(tokenizer, **changes):
    torch.manual_seed(0)
    config = dataclasses.replace(USERConfig(embed_size=16, queue_size=8, cge_hidden=12, clip_dim=10), **changes)
    config.validate()
    return build_user(config, feature_dim=D, text=TextConfig(), tokenizer=tokenizer)


def _batch(tokenizer, clip: bool = False) -> Batch:
    torch.manual_seed(1)
    texts = ["a dog runs on the grass", "two men ride bikes", "a red car", "children play in a park"]
    ids = [tokenizer.encode(t) for t in texts]
    lengths = torch.tensor([len(i) for i in ids])
    captions = torch.zeros(B, int(lengths.max()), dtype=torch.long)
    for row, tokens in enumerate(ids):
        captions[row, :len(tokens)] = torch.tensor(tokens)
    extras = {"clip": torch.randn(B, 10)} if clip else {}
    return Batch(images=torch.randn(B, K, D), image_lengths=torch.full((B,), K), captions=captions,
                 caption_lengths=lengths, image_index=torch.arange(B), caption_index=torch.arange(B), extras=extras)


def test_a_training_step_uses_the_queues_as_they_were_then_enqueues_the_momentum_keys(tokenizer):
    model = _model(tokenizer, momentum=0.5).train()
    batch = _batch(tokenizer)
    with torch.no_grad():  # the query encoders take one optimiser-like step away from the keys
        for p in model.image_encoder.parameters():
            p.add_(0.01)
    key_before = [p.clone() for p in model.key_image_encoder.parameters()]
    image_queue, caption_queue = model.image_queue.snapshot(), model.caption_queue.snapshot()
    state = torch.get_rng_state()
    losses = model.losses(batch)

    # keys: momentum update first (m = 0.5), then the key forward; queue rows 0..B-1 now hold them
    for before, query, key in zip(key_before, model.image_encoder.parameters(),
                                  model.key_image_encoder.parameters(), strict=True):
        torch.testing.assert_close(key, 0.5 * before + 0.5 * query)
    assert int(model.image_queue.pointer) == int(model.caption_queue.pointer) == B
    torch.testing.assert_close(model.image_queue.features[B:], image_queue[B:])
    key_images, key_captions = model.image_queue.features[:B], model.caption_queue.features[:B]
    assert not torch.equal(key_images, image_queue[:B])

    # the loss: UTO against the queues BEFORE the enqueue, with the same dropout draws
    torch.set_rng_state(state)
    images, captions = model.batch_embeddings(batch)
    torch.manual_seed(0)  # key forward draws dropout masks of its own; only the query side matters here
    cfg = model.config
    expected = uto_loss(images, captions, key_images=key_images, key_captions=key_captions,
                        image_queue=image_queue, caption_queue=caption_queue, gamma=cfg.gamma, margin=cfg.margin,
                        mini_batch_weight=cfg.mini_batch_weight)
    assert set(losses) == {"mini_batch", "dvq", "dtq"}
    torch.testing.assert_close(losses["mini_batch"], cfg.mini_batch_weight * expected["mini"])
    torch.testing.assert_close(losses["dvq"], expected["dvq"])
    torch.testing.assert_close(losses["dtq"], expected["dtq"])


def test_gradients_reach_the_query_encoders_only_and_the_optimiser_holds_them_only(tokenizer):
    model = _model(tokenizer).train()
    sum(model.losses(_batch(tokenizer)).values()).backward()
    for name, p in model.named_parameters():
        if name.startswith("key_"):
            assert not p.requires_grad and p.grad is None, name
    optimised = {id(p) for group in model.param_groups(1e-3) for p in group["params"]}
    query = {id(p) for m in (model.image_encoder, model.text_encoder) for p in m.parameters()}
    assert optimised == query
    groups = {g["name"]: g["lr"] for g in model.param_groups(1e-3)}
    assert groups == pytest.approx({"text": 1e-3, "bert": 1e-4, "image": 1e-3})
    assert model.image_encoder.enhance.local_fc.weight.grad is not None


@pytest.mark.parametrize("key_bert_dropout", [False, True])
def test_the_key_bert_runs_without_dropout_in_training_unless_asked(tokenizer, key_bert_dropout):
    """As the released code: the key text encoder's BERT stays in eval mode while everything else trains."""
    model = _model(tokenizer, key_bert_dropout=key_bert_dropout).train()
    batch = _batch(tokenizer)
    keys_in_step = []
    hook = model.key_text_encoder.register_forward_hook(lambda module, args, out: keys_in_step.append(out))
    model.losses(batch)
    hook.remove()
    bert = model.key_text_encoder.tokens.bert
    assert all(m.training != (not key_bert_dropout) for m in bert.modules())
    assert model.key_image_encoder.training and model.text_encoder.tokens.bert.training
    model.key_text_encoder.eval()  # the same weights without any dropout
    with torch.no_grad():
        no_dropout = model.key_text_encoder(batch.captions, batch.caption_lengths)
    largest_difference = (keys_in_step[0] - no_dropout).abs().max().item()
    if key_bert_dropout:
        assert largest_difference > 1e-3  # dropout 0.1 on every BERT layer moves unit-norm keys by far more
    else:
        assert largest_difference < 1e-5, largest_difference


@pytest.mark.parametrize("row", list(ABLATION_ROWS))
def test_table4_rows_build_only_what_they_use(tokenizer, row):
    config = load_config("user_smoke", ABLATION_ROWS[row]).model
    model = _model(tokenizer, enhancement=config.enhancement, dvq=config.dvq, dtq=config.dtq).train()
    assert (model.key_image_encoder is not None) == (model.image_queue is not None) == config.dvq
    assert (model.key_text_encoder is not None) == (model.caption_queue is not None) == config.dtq
    assert hasattr(model.image_encoder, "enhance") == (config.enhancement != "none")
    losses = model.losses(_batch(tokenizer))
    assert set(losses) == {"mini_batch"} | {name for name in ("dvq", "dtq") if getattr(config, name)}
    assert all(torch.isfinite(v) for v in losses.values())


def test_evaluation_encodes_with_the_query_encoders(tokenizer):
    model = _model(tokenizer).eval()
    batch = _batch(tokenizer)
    with torch.no_grad():
        for p in model.key_image_encoder.parameters():
            p.mul_(-1)
        images = model.encode_images(batch.images, batch.image_lengths)
        expected = model.image_encoder(batch.images, batch.image_lengths)
    torch.testing.assert_close(images, expected)
    assert images.shape == (B, 16)
    torch.testing.assert_close(images.norm(dim=1), torch.ones(B))


def test_cge_reads_the_clip_side_input_and_says_when_it_is_missing(tokenizer):
    model = _model(tokenizer, enhancement="cge").eval()
    assert [s.name for s in model.side_inputs] == ["clip"]
    batch = _batch(tokenizer, clip=True)
    with torch.no_grad():
        a = model.encode_images(batch.images, batch.image_lengths, batch.extras)
        b = model.encode_images(batch.images, batch.image_lengths, {"clip": batch.extras["clip"].flip(0)})
    assert not torch.allclose(a, b)  # the CLIP vector steers the enhancement
    with pytest.raises(ValueError, match=r"CGE needs the CLIP vectors .*model\.clip_dim.*\(B, 10\)"):
        model.encode_images(batch.images, batch.image_lengths, {"clip": torch.zeros(B, 7)})
    assert _model(tokenizer).side_inputs == ()


@pytest.mark.parametrize(("overrides", "match"), [
    (["model.queue_size=100"], r"model\.queue_size=100 must be a positive multiple of train\.batch_size=32"),
    (["train.batch_size=48"], r"model\.queue_size=128 must be a positive multiple of train\.batch_size=48"),
    (["model.enhancement=clip"], r"model\.enhancement must be one of sge, cge, none"),
    (["model.diagonal=kept"], r"model\.diagonal must be one of zeroed, excluded"),
    (["model.momentum=1.5"], r"model\.momentum must be in \[0, 1\]"),
    (["model.gamma=0"], r"model\.gamma must be > 0, got 0\.0"),
    (["model.queue_sise=128"], r"queue_sise"),
])
def test_bad_user_config_is_a_clear_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("user_smoke", overrides)
    load_config("user_smoke", ["model.queue_size=100", "model.dvq=false", "model.dtq=false"])  # no queue: fine


def _user_config(smoke_data, out, name, *extra):
    return load_config("user_smoke", [
        f"data.root={smoke_data}", f"output_dir={out}", f"name={name}", "model.embed_size=32", "model.queue_size=32",
        "train.batch_size=16", "train.epochs=2", "train.max_steps_per_epoch=3", "train.checkpoint_every=2",
        "train.keep_last=true", *extra])


GRU = ("text.encoder=bigru", "model.word_dim=16")
"""Resume is the engine's and the queues' business, not the text encoder's: the BiGRU keeps the test short."""


def test_killed_user_run_resumes_bit_exactly_with_its_queues_and_key_encoders(smoke_data, tmp_path):
    reference = Trainer(_user_config(smoke_data, tmp_path / "a", "run", *GRU), progress=False).fit()
    crashing = Trainer(_user_config(smoke_data, tmp_path / "b", "run", *GRU), progress=False)
    original = crashing.model.after_optimizer_step

    def crash(step):
        original(step)
        if step == 5:  # mid second epoch, one step after the step-4 checkpoint
            raise KeyboardInterrupt("simulated kill")

    crashing.model.after_optimizer_step = crash
    with pytest.raises(KeyboardInterrupt):
        crashing.fit()
    resumed = Trainer(_user_config(smoke_data, tmp_path / "b", "run", *GRU), progress=False).fit()
    assert resumed["best_val"] == reference["best_val"]

    def records(root):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_jsonl(root / "run" / "metrics.jsonl")
                if r["event"] != "resume"]

    assert records(tmp_path / "a") == records(tmp_path / "b")
    a = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=False)["model"]
    assert {"image_queue.features", "caption_queue.pointer", "key_text_encoder.pool.linear.weight"} <= set(a)
    for key, value in a.items():
        assert torch.equal(value, b[key]), key
    assert int(a["image_queue.pointer"]) == (6 * 16) % 32  # 6 steps of 16 keys
