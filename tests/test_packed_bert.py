"""BERT on packed tokens (text.packed_bert) against Hugging Face's padded forward: the same hidden states at
valid positions, the same gradients, the same caption embeddings in every model."""

import pytest
import torch

from itrlib.config import load_config
from itrlib.data.collate import pad_sequences
from itrlib.data.text import BertWordPieceTokenizer, resolve_bert_path
from itrlib.engine.components import create_model
from itrlib.nn.packed_bert import packable, packed_hidden_states
from itrlib.nn.padded import PaddedSet
from itrlib.nn.text_encoders import BertTokenFeatures

TEXTS = ["a dog", "two people walk along a sandy beach next to the sea at sunset", "a red car parked",
         "a man", "children playing football on a green field in the park"]


@pytest.fixture(scope="module")
def tokenizer():
    return BertWordPieceTokenizer(resolve_bert_path("minilm"))


def _captions(tokenizer, texts=TEXTS):
    return pad_sequences([tokenizer.encode(t) for t in texts], tokenizer.pad_id)


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    """Equal up to float rounding, relative to the tensors' scale."""
    assert (a - b).abs().max().item() <= rel * max(a.abs().max().item(), 1e-12)


def test_minilm_is_packable_and_hidden_states_match_the_padded_forward(tokenizer):
    encoder = BertTokenFeatures(tokenizer.path, embed_size=None, pad_id=tokenizer.pad_id).eval()
    assert encoder.packed and packable(encoder.bert)
    ids, _ = _captions(tokenizer)
    valid = ids != tokenizer.pad_id
    assert (~valid).float().mean() > 0.3  # the check means something only with much padding
    with torch.no_grad():
        reference = encoder.bert(input_ids=ids, attention_mask=valid.long(), output_hidden_states=True).hidden_states
        packed = packed_hidden_states(encoder.bert, ids, valid, last=3)
    assert len(packed) == 3
    for mine, theirs in zip(packed, reference[-3:], strict=True):
        _close(mine[valid], theirs[valid])
        assert not mine[~valid].any()


def test_gradients_match_the_padded_forward(tokenizer):
    ids, _ = _captions(tokenizer)
    grads = []
    for packed in (True, False):
        torch.manual_seed(0)  # the same projection after BERT
        encoder = BertTokenFeatures(tokenizer.path, embed_size=16, pad_id=tokenizer.pad_id, packed=packed).eval()
        valid = ids != tokenizer.pad_id
        (encoder(ids, None)[valid] ** 2).sum().backward()
        grads.append({name: p.grad for name, p in encoder.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    compared = 0
    for name in grads[0]:
        if name.endswith("key.bias") or name.startswith("bert.pooler"):
            continue  # analytically zero (a key bias shifts all logits of a query alike) / unused: no gradient
        _close(grads[0][name], grads[1][name], rel=1e-4)
        compared += 1
    assert compared > 50


def test_training_draws_the_padded_forwards_dropout_masks(tokenizer):
    """In training mode, from the same random state, packed and padded draw the same dropout masks (the padded
    shapes, in the same order), so they agree at valid positions; another state gives other masks."""
    encoder = BertTokenFeatures(tokenizer.path, embed_size=None, pad_id=tokenizer.pad_id).train()
    assert encoder.bert.config.hidden_dropout_prob > 0 and encoder.bert.config.attention_probs_dropout_prob > 0
    ids, _ = _captions(tokenizer)
    valid = ids != tokenizer.pad_id
    with torch.no_grad():
        outputs = []
        for seed, packed in ((0, True), (0, False), (1, True)):
            encoder.packed = packed
            torch.manual_seed(seed)
            outputs.append(encoder(ids, None)[valid])
    _close(outputs[0], outputs[1])
    assert (outputs[0] - outputs[2]).abs().max() > 0.1 * outputs[0].abs().max()


@pytest.mark.parametrize("name", ["vse", "afa", "user", "mvsen"])
def test_every_model_embeds_captions_alike_packed_or_padded(name, tokenizer):
    ids, lengths = _captions(tokenizer)
    embeddings = []
    for packed in ("true", "false"):
        config = load_config(f"{name}_smoke", [f"text.packed_bert={packed}"])
        torch.manual_seed(0)
        model = create_model(config, 64, tokenizer).eval()
        with torch.no_grad():
            out = model.encode_captions(ids, lengths)
        embeddings.append(out.features[out.mask()] if isinstance(out, PaddedSet) else out)
    _close(*embeddings, rel=1e-4)
