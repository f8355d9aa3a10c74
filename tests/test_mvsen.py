"""MVSEN: batched pairwise scoring against the release-style loop, the model's losses and switches, T+."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itrlib.config import load_config
from itrlib.data.collate import Batch
from itrlib.data.datasets import PairDataset
from itrlib.data.precomp import open_split
from itrlib.data.text import BertWordPieceTokenizer, resolve_bert_path
from itrlib.errors import ConfigError, DataError
from itrlib.evaluation.scoring import block_shape, sharded_scores
from itrlib.losses.dynamic_topk import dynamic_k, dynamic_topk_hinge
from itrlib.models.mvsen import ABLATION_ROWS, build_mvsen
from itrlib.nn.mvsen_similarity_reasoning import SimilarityGraph, pairwise_scores
from itrlib.nn.padded import PaddedSet
from itrlib.suite.bench.mvsen_scoring import caption_loop_scores


@pytest.fixture(scope="module")
def tokenizer():
    return BertWordPieceTokenizer(resolve_bert_path("minilm"))


def _sets(seed: int = 0, n_img: int = 5, n_cap: int = 7, k: int = 6, dim: int = 16
          ) -> tuple[PaddedSet, PaddedSet]:
    g = torch.Generator().manual_seed(seed)
    regions = PaddedSet(torch.randn(n_img, k, dim, generator=g), torch.full((n_img,), k))
    lengths = torch.randint(1, 9, (n_cap,), generator=g)
    words = torch.randn(n_cap, int(lengths.max()) + 2, dim, generator=g)  # padding beyond the longest, too
    words[torch.arange(words.shape[1])[None] >= lengths[:, None]] = 7.0  # garbage at padded positions
    return regions, PaddedSet(words, lengths)


def _graph(dim: int = 16, seed: int = 0) -> SimilarityGraph:
    torch.manual_seed(seed)
    graph = SimilarityGraph(dim, sim_dim=8, hidden=5, layers=3)
    with torch.no_grad():  # non-zero biases, so the fused edge logits are exercised
        for p in graph.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return graph.eval()


@pytest.mark.parametrize("nodes", ["regions", "words"])
def test_batched_scores_equal_a_per_pair_loop_and_the_release_style_loop(nodes):
    regions, words = _sets()
    graph = _graph()
    with torch.no_grad():
        batched, _ = pairwise_scores(graph, regions, words, nodes)
        per_pair = caption_loop_scores(graph, regions, words, nodes, image_shard=1)
        shard_loop = caption_loop_scores(graph, regions, words, nodes, image_shard=2)
    assert batched.dtype == torch.float32 and batched.shape == (5, 7)
    assert (batched - per_pair).abs().max() <= 1e-4
    assert (shard_loop - per_pair).abs().max() <= 1e-5
    assert batched.std() > 1e-3  # the scores differ between pairs


def test_padded_regions_are_ignored():
    regions, words = _sets(n_img=2)
    graph = _graph()
    padded = PaddedSet(torch.cat([regions.features, torch.full((2, 3, 16), 5.0)], 1), regions.lengths)
    with torch.no_grad():
        for nodes in ("regions", "words"):
            a, fa = pairwise_scores(graph, regions, words, nodes, features=True)
            b, fb = pairwise_scores(graph, padded, words, nodes, features=True)
            assert (a - b).abs().max() <= 1e-5
            assert (fa.regions_at_words - fb.regions_at_words).abs().max() <= 1e-5


def _pair_means(v: torch.Tensor, t: torch.Tensor, scale: float = 10.0, slope: float = 0.1
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One image (K valid regions, d) and one caption (n valid words, d), written out from the definitions:
    (mean over regions of the words attended there, mean over words of the regions attended there)."""
    a = torch.nn.functional.leaky_relu(v @ t.T, slope)  # (K, n)
    words_at = torch.softmax(scale * a / (a.norm(dim=0, keepdim=True) + 1e-8), dim=1) @ t  # (K, d)
    regions_at = torch.softmax(scale * a / (a.norm(dim=1, keepdim=True) + 1e-8), dim=0).T @ v  # (n, d)
    return words_at.mean(0), regions_at.mean(0)


@pytest.mark.parametrize("nodes", ["regions", "words"])
def test_pair_features_equal_the_per_pair_means_of_the_attended_features(nodes):
    regions, words = _sets(seed=4)
    lengths = torch.tensor([6, 3, 6, 1, 4])  # padded regions (garbage beyond each length)
    features = regions.features.clone()
    features[torch.arange(6)[None] >= lengths[:, None]] = -3.0
    regions = PaddedSet(features, lengths)
    with torch.no_grad():
        _, pairs = pairwise_scores(_graph(), regions, words, nodes, features=True)
    assert pairs.words_at_regions.shape == pairs.regions_at_words.shape == (5, 7, 16)
    for i in range(5):
        for c in range(7):
            at_regions, at_words = _pair_means(regions.features[i, :lengths[i]], words.features[c, :words.lengths[c]])
            torch.testing.assert_close(pairs.words_at_regions[i, c], at_regions, atol=1e-5, rtol=0)
            torch.testing.assert_close(pairs.regions_at_words[i, c], at_words, atol=1e-5, rtol=0)


def test_model_scores_sharded_equal_unsharded_and_the_loop(tokenizer):
    config = load_config("mvsen_smoke", ["model.score_pass_mb=1"]).model
    model = build_mvsen(config, feature_dim=16, text=load_config("mvsen_smoke").text, tokenizer=tokenizer).eval()
    regions, words = _sets(n_img=9, n_cap=23, dim=config.d_model)
    assert model.pairs_per_pass(torch.device("cpu")) == 2**20 // (4 * 36 * 64)
    model.pairs_per_pass = lambda device: 10  # several passes per block, captions re-ordered by length
    with torch.no_grad():
        whole = model.score(regions, words)
        blocks = sharded_scores(model.score, regions, words, *block_shape(9, 23, 40))
        loop = caption_loop_scores(model.graph, regions, words, config.nodes, image_shard=1)
    assert (whole - blocks).abs().max() <= 1e-5
    assert (whole - loop).abs().max() <= 1e-4


def test_dynamic_k_follows_the_count_of_row_violations():
    scores = torch.tensor([[1.0, 0.9, 0.0], [0.95, 1.0, 0.9], [0.0, 0.0, 1.0]])
    cost_row = (0.2 + scores - scores.diagonal()[:, None]).clamp(min=0).fill_diagonal_(0)
    # 3 violations in a batch of 3: int(3 / (3 + 1e-5) + 1) = 1 (the release's 1e-5 rounds exact multiples down)
    assert int((cost_row > 0).sum()) == 3 and dynamic_k(cost_row) == 1
    assert dynamic_k(torch.ones(3, 3)) == 3 and dynamic_k(torch.zeros(3, 3)) == 1
    # slow reference: the K = 1 largest per row and per column
    cost_col = (0.2 + scores - scores.diagonal()[None, :]).clamp(min=0).fill_diagonal_(0)
    expected = (sum(sum(sorted(r, reverse=True)[:1]) for r in cost_row.tolist())
                + sum(sum(sorted(c, reverse=True)[:1]) for c in cost_col.T.tolist()))
    assert dynamic_topk_hinge(scores, 0.2).item() == pytest.approx(expected, abs=1e-6)


def _batch(smoke_data, tokenizer, positive: str | None = "random", n: int = 6) -> Batch:
    split = open_split(smoke_data, "train")
    labels = np.loadtxt(smoke_data / "train_label.txt", dtype=np.int64)
    data = PairDataset(split, tokenizer, train=True, region_keep_prob=1.0, caption_augment=False,
                       extras={"label": labels}, positive=positive)
    return data.collate_fn([data[i * 5 + i % 5] for i in range(n)])


def _model(tokenizer, *overrides: str):
    config = load_config("mvsen_smoke", list(overrides))
    torch.manual_seed(0)
    return build_mvsen(config.model, feature_dim=64, text=config.text, tokenizer=tokenizer)


def test_losses_are_finite_with_finite_gradients_and_follow_the_task_switches(smoke_data, tokenizer):
    batch = _batch(smoke_data, tokenizer)
    assert batch.positive_captions is not None and (batch.caption_lengths.unique().numel() > 1)
    model = _model(tokenizer)
    losses = model.losses(batch)
    assert set(losses) == {"ranking", "text_matching", "classification"}
    sum(losses.values()).backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    # only the GCN key biases get no gradient: they add a constant to each softmax row, which cancels
    assert {name for name, g in grads.items() if g is None} == {f"graph.layers.{i}.key.bias" for i in range(3)}
    assert not any(p.requires_grad for p in model.bert.parameters())  # BERT stays frozen
    for row, expected in (("#1 R t2i", {"ranking"}), ("#5 R+M i2t", {"ranking", "text_matching"}),
                          ("#7 R+C t2i", {"ranking", "classification"})):
        model = _model(tokenizer, *ABLATION_ROWS[row])
        assert set(model.losses(_batch(smoke_data, tokenizer, model.positive_caption))) == expected


def test_label_width_mismatch_is_a_clear_error(smoke_data, tokenizer):
    model = _model(tokenizer, "model.num_labels=10")
    with pytest.raises(DataError, match=r"model\.num_labels.*\(B, 10\)"):
        model.losses(_batch(smoke_data, tokenizer))


def test_official_padding_makes_caption_features_depend_on_the_batch_padding(smoke_data, tokenizer):
    ids = torch.tensor([tokenizer.encode("a dog runs on the grass")])
    lengths = torch.tensor([ids.shape[1]])
    padded = torch.nn.functional.pad(ids, (0, 5), value=tokenizer.pad_id)
    for official, differs in ((False, False), (True, True)):
        model = _model(tokenizer, f"model.official_padding={str(official).lower()}").eval()
        with torch.no_grad():
            a = model.encode_captions(ids, lengths).features[0]
            b = model.encode_captions(padded, lengths).features[0, : ids.shape[1]]
        assert ((a - b).abs().max() > 1e-3) == differs


def test_positive_captions_are_other_captions_of_the_same_image(smoke_data, tokenizer):
    split = open_split(smoke_data, "train")
    caps = [tokenizer.encode(c) for c in split.captions[:5]]
    draws = {}
    for epoch in range(6):
        data = PairDataset(split, tokenizer, train=True, caption_augment=False, positive="random")
        data.set_epoch(epoch)
        draws[epoch] = caps.index(data[2].positive_tokens)
        again = PairDataset(split, tokenizer, train=True, caption_augment=False, positive="random")
        again.set_epoch(epoch)
        assert again[2].positive_tokens == data[2].positive_tokens  # a function of (seed, epoch, index)
    assert 2 not in draws.values() and len(set(draws.values())) > 1
    fixed = PairDataset(split, tokenizer, train=True, positive="next")
    assert fixed[4].positive_tokens == caps[0] and fixed[1].positive_tokens == caps[2]
    with pytest.raises(ConfigError):
        PairDataset(split, tokenizer, train=True, positive="any")


@pytest.mark.parametrize("override", ["model.direction=both", "model.gamma=1.5", "model.label_view=mean",
                                      "model.d_model=0", "model.negatives=max"])
def test_config_errors(override):
    with pytest.raises(ConfigError):
        load_config("mvsen_smoke", [override])


def test_text_matching_ignores_extra_padding_unless_official():
    from itrlib.models.mvsen import TextMatchingHead

    torch.manual_seed(0)
    words, lengths = torch.randn(4, 5, 8), torch.tensor([5, 3, 2, 4])
    words[torch.arange(5)[None] >= lengths[:, None]] = 0.0  # BiGRU outputs are 0 at padding
    longer = torch.nn.functional.pad(words, (0, 0, 0, 3))
    for masked in (True, False):
        head = TextMatchingHead(8, 2, 4, masked=masked).eval()
        with torch.no_grad():
            a = head(words, lengths, words.flip(0), lengths.flip(0))
            b = head(longer, lengths, longer.flip(0), lengths.flip(0))
        # outputs ~1: masked, the two paddings differ by float32 round-off only (other tensor shapes, other
        # kernels: ~1e-7 here, a few ulps elsewhere); unmasked, the extra padding moves them by ~0.07
        assert ((a - b).abs().max() <= 1e-5) == masked


def test_label_views_follow_their_definitions(tokenizer):
    from itrlib.nn.mvsen_similarity_reasoning import PairFeatures

    g = torch.Generator().manual_seed(0)
    at_regions, at_words = torch.randn(3, 3, 4, generator=g), torch.randn(3, 3, 4, generator=g)
    features = PairFeatures(at_regions, at_words)
    official = _model(tokenizer).label_input(features)
    paper = _model(tokenizer, "model.label_view=paper").label_input(features)
    for c in range(3):  # caption c: official averages over every image, paper takes the matched pair only
        expected = 0.99 * at_regions[:, c].mean(0) + 0.01 * at_words[:, c].mean(0)
        assert torch.allclose(official[c], expected, atol=1e-6)
        assert torch.allclose(paper[c], 0.01 * at_regions[c, c] + 0.99 * at_words[c, c], atol=1e-6)


@pytest.mark.parametrize("view", ["official", "paper"])
def test_a_ranks_columns_give_the_label_inputs_of_its_captions(tokenizer, view):
    """Under DDP a rank holds every image against its own captions (columns 2-3 of 5 here): its label inputs
    are those rows of the whole batch's, the paper's view reading each caption's own image."""
    from itrlib.nn.mvsen_similarity_reasoning import PairFeatures

    g = torch.Generator().manual_seed(1)
    whole = PairFeatures(torch.randn(5, 5, 4, generator=g), torch.randn(5, 5, 4, generator=g))
    columns = PairFeatures(whole.words_at_regions[:, 2:4], whole.regions_at_words[:, 2:4])
    model = _model(tokenizer, f"model.label_view={view}")
    torch.testing.assert_close(model.label_input(columns, first_image=2), model.label_input(whole)[2:4], rtol=1e-6,
                               atol=1e-7)
