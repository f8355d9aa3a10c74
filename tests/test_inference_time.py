"""Inference-time measurement (Fig. 6): keys and sizes, timings consistent, RNG and training flag untouched,
side inputs (USER CGE) generated, and the matched matrix equal to the product of the embeddings."""

import pytest
import torch

from itrlib.config import TextConfig
from itrlib.data.text import BertWordPieceTokenizer, resolve_bert_path
from itrlib.models.base import concat_embeddings
from itrlib.models.user import USERConfig, build_user
from itrlib.models.vse import VSEConfig, build_vse
from itrlib.suite.inference_time import (
    TEST_SIZES,
    TIMES,
    inference_time_table,
    measure_inference_time,
    random_caption_batches,
    random_image_batches,
)

D = 8
SIZES = {"n_images": 10, "n_captions": 50, "regions": 4, "feature_dim": D, "batch_size": 16}


@pytest.fixture(scope="module")
def tokenizer():
    return BertWordPieceTokenizer(resolve_bert_path("minilm"))


@pytest.fixture(scope="module")
def vse(tokenizer):
    torch.manual_seed(0)
    return build_vse(VSEConfig(embed_size=16), feature_dim=D, text=TextConfig(), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def user_cge(tokenizer):
    torch.manual_seed(0)
    config = USERConfig(embed_size=16, queue_size=8, cge_hidden=12, clip_dim=10, enhancement="cge")
    config.validate()
    return build_user(config, feature_dim=D, text=TextConfig(), tokenizer=tokenizer)


def _encode_directly(model, **sizes):
    """Embeddings of the same random inputs, encoded without the timing code."""
    n_images, n_captions = sizes.pop("n_images"), sizes.pop("n_captions")
    regions, feature_dim = sizes.pop("regions"), sizes.pop("feature_dim")
    with torch.no_grad():
        images = [model.encode_images(*batch) for batch in random_image_batches(
            model, n_images, regions=regions, feature_dim=feature_dim, **sizes)]
        captions = [model.encode_captions(*batch) for batch in random_caption_batches(model, n_captions, **sizes)]
    return concat_embeddings(images), concat_embeddings(captions)


def test_times_and_sizes_are_reported_and_consistent(vse):
    vse.train()
    rng = torch.get_rng_state()
    result = measure_inference_time(vse, **SIZES, repeats=2, progress=False)
    assert torch.equal(torch.get_rng_state(), rng)
    assert vse.training  # restored
    assert set(TIMES) <= set(result)
    assert (result["images"], result["captions"], result["regions"], result["feature_dim"]) == (10, 50, 4, D)
    assert result["pairs"] == 500 and result["device"] == "cpu" and len(result["runs"]) == 2
    assert "scores" not in result
    assert all(result[key] > 0 for key in TIMES)
    assert result["encode"] == pytest.approx(result["encode_images"] + result["encode_captions"])
    assert result["total"] == pytest.approx(result["encode"] + result["match"])
    for key in ("encode_images", "encode_captions", "match"):  # the fastest repeat
        assert result[key] == min(run[key] for run in result["runs"])


def test_matched_matrix_is_the_product_of_the_embeddings_in_any_block_shape(vse):
    vse.eval()
    images, captions = _encode_directly(vse, **SIZES)
    expected = images.float() @ captions.float().T
    for max_pairs in (None, 7, 120):  # one block; blocks smaller than a row; several rows per block
        result = measure_inference_time(vse, **SIZES, progress=False, return_scores=True,
                                        max_pairs_per_block=max_pairs)
        assert not vse.training  # eval stays eval
        scores = result["scores"]
        assert scores.dtype == torch.float32 and scores.shape == (10, 50)
        torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


def test_random_inputs_have_the_requested_shapes_ids_and_lengths(vse):
    image_batches = list(random_image_batches(vse, 10, regions=4, feature_dim=D, batch_size=4))
    assert [len(b[0]) for b in image_batches] == [4, 4, 2]
    assert image_batches[0][0].shape == (4, 4, D) and image_batches[0][0].dtype == torch.float32
    assert all(torch.equal(b[1], torch.full((len(b[0]),), 4)) for b in image_batches)
    batches = list(random_caption_batches(vse, 300, caption_lengths=(8, 16), batch_size=128))
    ids = torch.cat([b[0][:, :8] for b in batches])
    lengths = torch.cat([b[1] for b in batches])
    assert len(lengths) == 300 and int(lengths.min()) >= 8 and int(lengths.max()) <= 16
    assert len(lengths.unique()) > 5  # drawn, not constant
    assert bool(((ids >= 1000) & (ids < 2000)).all())
    for padded, lens, _ in batches:  # pad id exactly after each length
        inside = torch.arange(padded.shape[1]) < lens[:, None]
        assert bool((padded[~inside] == 0).all()) and bool((padded[inside] >= 1000).all())
    again = list(random_caption_batches(vse, 300, caption_lengths=(8, 16), batch_size=128))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


def test_a_model_with_a_cge_side_input_gets_random_clip_rows(user_cge):
    assert [spec.name for spec in user_cge.side_inputs] == ["clip"]
    batch = next(random_image_batches(user_cge, 5, regions=4, feature_dim=D))
    assert batch[2]["clip"].shape == (5, 10)
    user_cge.train()
    rng = torch.get_rng_state()
    result = measure_inference_time(user_cge, **SIZES, progress=False, return_scores=True)
    assert torch.equal(torch.get_rng_state(), rng) and user_cge.training
    user_cge.eval()
    images, captions = _encode_directly(user_cge, **SIZES)
    torch.testing.assert_close(result["scores"], images @ captions.T, rtol=1e-5, atol=1e-5)


def test_a_side_input_without_a_known_width_is_refused(vse, monkeypatch):
    from itrlib.data.side_inputs import SideInput

    monkeypatch.setattr(vse, "side_inputs", (SideInput("depth", per="caption"),), raising=False)
    with pytest.raises(ValueError, match="depth_dim"):
        measure_inference_time(vse, **SIZES, progress=False)
    batch = next(random_caption_batches(vse, 3, side_dims={"depth": 6}))
    assert batch[2]["depth"].shape == (3, 6)


def test_table_has_a_row_per_model_and_protocol(vse):
    assert TEST_SIZES == {"f30k1k": (1000, 5000), "coco1k": (1000, 5000), "coco5k": (5000, 25000)}
    sizes = {"tiny": (6, 30), "small": (10, 50)}
    table = inference_time_table({"vse": vse}, sizes, feature_dim=D, regions=4, progress=False, batch_size=16)
    assert list(table.columns) == ["model", "protocol", "images", "captions", "encode_s", "match_s", "total_s"]
    assert table[["model", "protocol"]].values.tolist() == [["vse", "tiny"], ["vse", "small"]]
    assert table["images"].tolist() == [6, 10] and table["captions"].tolist() == [30, 50]
    assert (table[["encode_s", "match_s", "total_s"]] > 0).all().all()
    assert table["total_s"].tolist() == pytest.approx((table["encode_s"] + table["match_s"]).tolist())


def test_progress_flag_controls_the_summary_line(vse, capsys, monkeypatch):
    monkeypatch.setenv("ITRLIB_PROGRESS", "lines")
    measure_inference_time(vse, **SIZES, progress=False)
    assert capsys.readouterr().out == ""
    measure_inference_time(vse, **SIZES, progress=True)
    assert "10 images x 50 captions on cpu: encode" in capsys.readouterr().out
