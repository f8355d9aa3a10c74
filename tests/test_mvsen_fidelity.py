"""MVSEN against numbers recorded from the released code (FlyCuteBird/MVSEN @ 802002c).

tests/fixtures/mvsen_official.npz holds seeded inputs, the official modules' weights (official parameter
names) and their outputs, written by tests/fixtures/record_mvsen_official.py from the official files.
Each test loads those weights into this suite's module, runs the same inputs and compares (max |d| <= 1e-5).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from itrlib.losses.dynamic_topk import dynamic_topk_hinge
from itrlib.models.mvsen import LabelClassifier, TextMatchingHead
from itrlib.nn.mvsen_memory_attention import MemoryAttention, MemoryAugmentedEncoder
from itrlib.nn.mvsen_similarity_reasoning import SimilarityGraph, pairwise_scores
from itrlib.nn.padded import PaddedSet

FIXTURE = Path(__file__).parent / "fixtures" / "mvsen_official.npz"
TOL = 1e-5


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def _tensor(data: dict, key: str) -> torch.Tensor:
    return torch.from_numpy(np.asarray(data[key], dtype=np.float32).copy()) if data[key].dtype.kind == "f" \
        else torch.from_numpy(data[key].copy())


def _load(module: torch.nn.Module, data: dict, prefix: str, names: dict[str, str]) -> None:
    """Copy official ``prefix/<official>`` arrays into ``module``'s ``<ours>`` entries; every entry of ours
    must be covered."""
    state = {ours: _tensor(data, f"{prefix}/{theirs}") for ours, theirs in names.items()}
    missing = set(module.state_dict()) - set(state)
    assert not missing, f"unmapped parameters: {sorted(missing)}"
    module.load_state_dict(state)


def _weight_norm_names(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.parametrizations.weight.original0": f"{theirs}.weight_g",
            f"{ours}.parametrizations.weight.original1": f"{theirs}.weight_v", f"{ours}.bias": f"{theirs}.bias"}


def _linear(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.weight": f"{theirs}.weight", f"{ours}.bias": f"{theirs}.bias"}


def _attention_names(ours: str, theirs: str) -> dict[str, str]:
    names: dict[str, str] = {}
    for a, b in (("query", "fc_q"), ("key", "fc_k"), ("value", "fc_v"), ("out", "fc_o")):
        names |= _linear(f"{ours}.{a}", f"{theirs}.{b}")
    return names


def _encoder(official: dict, key_padding: str) -> MemoryAugmentedEncoder:
    dims = json.loads(str(official["meta"]))["dims"]["enc"]
    enc = MemoryAugmentedEncoder(dims["d_in"], dims["d_model"], dims["h"], dims["d_k"], dims["d_ff"], dims["m"],
                                 layers=dims["N"], key_padding=key_padding)
    theirs = "layers.0.mhatt.attention"
    names = _linear("input", "fc") | _linear("input_norm", "layer_norm") | _attention_names(
        "layers.0.attention", theirs) | {"layers.0.attention.memory_keys": f"{theirs}.m_k",
                                         "layers.0.attention.memory_values": f"{theirs}.m_v"}
    names |= _linear("layers.0.attention_norm", "layers.0.mhatt.layer_norm")
    names |= _linear("layers.0.ff_in", "layers.0.pwff.fc1") | _linear("layers.0.ff_out", "layers.0.pwff.fc2")
    names |= _linear("layers.0.ff_norm", "layers.0.pwff.layer_norm")
    _load(enc, official, "enc", names)
    return enc.eval()


def _close(ours: torch.Tensor, theirs: np.ndarray, tol: float = TOL) -> float:
    delta = float((ours.detach() - torch.from_numpy(np.asarray(theirs, dtype=np.float32))).abs().max())
    assert delta <= tol, f"max |delta| {delta:.3g} > {tol}"
    return delta


def test_memory_encoder_official_padding_equals_release(official):
    enc = _encoder(official, "official")
    lengths = _tensor(official, "words_lengths")
    with torch.no_grad():
        _close(enc(_tensor(official, "regions"), torch.full((3,), 6)), official["enc_regions_out"])
        _close(enc(_tensor(official, "words"), lengths), official["enc_words_out"])


def test_memory_encoder_masks_padding_by_default(official):
    """Masked by lengths, each caption's valid positions equal the release run on the caption alone; the
    release's own batched output differs there (its mask masks nothing)."""
    enc = _encoder(official, "lengths")
    lengths = _tensor(official, "words_lengths")
    with torch.no_grad():
        out = enc(_tensor(official, "words"), lengths)
    valid = (torch.arange(out.shape[1])[None] < lengths[:, None])[..., None]
    _close(out * valid, official["enc_words_lens_out"])
    assert np.abs(official["enc_words_out"] - official["enc_words_lens_out"])[valid.numpy()[..., 0]].max() > 0.1


@pytest.mark.parametrize("direction,nodes", [("i2t", "regions"), ("t2i", "words")])
def test_pairwise_scores_and_label_features_equal_release(official, direction, nodes):
    dims = json.loads(str(official["meta"]))["dims"]["reason"]
    graph = SimilarityGraph(dims["embed_size"], dims["sim_dim"], dims["hid_dim"], layers=3)
    names = _weight_norm_names("project", "sim_w") | _weight_norm_names("hidden", "out_1") | \
        _weight_norm_names("score", "out_2")
    for i in range(3):
        names |= _linear(f"layers.{i}.query", f"graph_reasoning.{i}.graph_query_w")
        names |= _linear(f"layers.{i}.key", f"graph_reasoning.{i}.graph_key_w")
    _load(graph, official, direction, names)
    imgs = PaddedSet(_tensor(official, "imgs"), torch.full((4,), 6))
    caps = PaddedSet(_tensor(official, "caps"), _tensor(official, "caps_lengths"))
    with torch.no_grad():
        scores, features = pairwise_scores(graph.eval(), imgs, caps, nodes, features=True)
    _close(scores, official[f"{direction}_sims"])
    # the release's classifier inputs: means over the block's images of the per-pair means
    _close(features.words_at_regions.mean(0), official[f"{direction}_visual"])
    _close(features.regions_at_words.mean(0), official[f"{direction}_textual"])


def test_ranking_losses_equal_release(official):
    scores = _tensor(official, "rank_scores")
    for negatives, key in (("topk", "rank_loss_topk"), ("hardest", "rank_loss_hardest"), ("all", "rank_loss_sum")):
        _close(dynamic_topk_hinge(scores, 0.2, negatives), official[key])


def test_text_matching_equals_release(official):
    """Plain attention (the release's ``Attention``) and the text-text loss on attended features, with the
    release's mean over every padded position (``official_padding``)."""
    attention = MemoryAttention(16, 4, 16, slots=0)
    names = {ours: theirs for a, b in (("query", "fc_q"), ("key", "fc_k"), ("value", "fc_v"), ("out", "fc_o"))
             for ours, theirs in _linear(a, b).items()}
    _load(attention, official, "attn", names)
    with torch.no_grad():
        _close(attention(_tensor(official, "attn_x"), None), official["plain_attention_out"])
    head = TextMatchingHead(16, 4, 4, masked=False)
    state = head.state_dict()
    state |= {k: _tensor(official, f"tt_loss/{v}") for k, v in
              (_linear("positive_project", "fc1") | _linear("project", "fc2")).items()}
    head.load_state_dict(state)
    with torch.no_grad():
        cosines = head.cosines(_tensor(official, "tt_init").mean(1), _tensor(official, "tt_target").mean(1))
    _close(dynamic_topk_hinge(cosines, 0.2), official["text_match_loss"])


def test_label_loss_equals_release(official):
    head = LabelClassifier(1024, 1000)
    _load(head, official, "label", _weight_norm_names("hidden", "out_1") | _weight_norm_names("out", "out_2"))
    with torch.no_grad():
        logits = head(_tensor(official, "label_x"))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, _tensor(official, "label_targets"))
    _close(loss, official["label_loss"])
