"""Side inputs: found beside the precomp files (.npy or .txt), per image or per caption, cut like the split,
and delivered to the model in training, validation and evaluation alike."""

import re
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from itrlib.config import TextConfig
from itrlib.data.datasets import CaptionDataset, PairDataset
from itrlib.data.precomp import open_split
from itrlib.data.side_inputs import SideInput, load_side_inputs, side_input_path
from itrlib.data.text import Vocabulary
from itrlib.engine.trainer import Trainer
from itrlib.errors import DataError
from itrlib.models.registry import register_model
from itrlib.models.vse import VSEConfig, VSEModel, build_vse
from itrlib.runs.trained import evaluate_trained


def test_npy_and_text_side_files_are_read_per_image(smoke_data):
    split = open_split(smoke_data, "test")
    side = load_side_inputs(split, (SideInput("clip"), SideInput("label")))
    assert side.image["clip"].shape[0] == split.n_images and side.image["clip"].dtype == np.float32
    labels = side.image["label"]
    assert labels.shape[0] == split.n_images and labels.dtype == np.int64
    first = (smoke_data / "test_label.txt").read_text().splitlines()[0].split()
    assert labels[0].tolist() == [int(x) for x in first]
    assert side.caption == {}


def test_side_inputs_are_cut_like_the_dev_split(smoke_data):
    split = open_split(smoke_data, "dev", max_images=7)
    side = load_side_inputs(split, (SideInput("clip"), SideInput("label")))
    assert side.image["clip"].shape[0] == 7 and side.image["label"].shape[0] == 7
    np.testing.assert_array_equal(side.image["clip"], np.load(smoke_data / "dev_clip.npy")[:7])


def _copy_split(src, dst, split="test"):
    dst.mkdir()
    for path in src.glob(f"{split}_*"):
        (dst / path.name).write_bytes(path.read_bytes())
    return dst


def test_per_caption_text_side_file_and_bad_files(smoke_data, tmp_path):
    root = _copy_split(smoke_data, tmp_path / "data")
    split = open_split(root, "test")
    values = np.arange(split.n_captions * 2, dtype=np.float32).reshape(-1, 2) / 7
    (root / "test_weight.txt").write_text("".join(f"{float(a)!r} {float(b)!r}\n" for a, b in values))
    side = load_side_inputs(split, (SideInput("weight", per="caption"),))
    np.testing.assert_allclose(side.caption["weight"], values)
    dataset = CaptionDataset(split, Vocabulary.build(split.captions), extras=side.caption)
    batch = dataset.collate_fn([dataset[3], dataset[4]])
    np.testing.assert_allclose(batch.extras["weight"].numpy(), values[3:5])

    with pytest.raises(DataError, match=r"test_weight\.txt: .*rows, expected one per image"):
        load_side_inputs(split, (SideInput("weight", per="image"),))
    with pytest.raises(DataError, match=r"test_missing\.npy and .*test_missing\.txt"):
        side_input_path(split, "missing")
    with pytest.raises(DataError, match=rf"test_missing\.txt; build it with: make-it --root {re.escape(str(root))}$"):
        load_side_inputs(split, (SideInput("missing", how_to_build="make-it --root {root}"),))
    (root / "test_ragged.txt").write_text("1 2\n3\n")
    with pytest.raises(DataError, match="line 2"):
        load_side_inputs(split, (SideInput("ragged"),))
    (root / "test_nan.txt").write_text("".join("0.5\n" if i != 3 else "nan\n" for i in range(split.n_images)))
    with pytest.raises(DataError, match="line 4 has non-finite"):
        load_side_inputs(split, (SideInput("nan"),))
    with pytest.raises(ValueError, match="per must be"):
        SideInput("x", per="pixel")


def test_pair_batches_carry_image_and_caption_side_rows(smoke_data):
    split = open_split(smoke_data, "test")
    vocab = Vocabulary.build(split.captions)
    glob = np.arange(split.n_images * 3, dtype=np.float32).reshape(-1, 3)
    per_caption = np.arange(split.n_captions, dtype=np.int64)[:, None]
    ds = PairDataset(split, vocab, train=False, extras={"global": glob}, caption_extras={"cap": per_caption})
    batch = ds.collate_fn([ds[0], ds[7], ds[12]])
    np.testing.assert_array_equal(batch.extras["global"].numpy(), glob[[0, 1, 2]])
    assert batch.extras["cap"].squeeze(1).tolist() == [0, 7, 12]


@dataclass
class SideVSEConfig(VSEConfig):
    name: str = "test_side_vse"


class SideVSE(VSEModel):
    """VSE whose image embedding needs the per-image global vector and the per-image labels."""

    side_inputs = (SideInput("clip"), SideInput("label"))
    calls: list[str] = []  # noqa: RUF012  (a class-level log the test reads)

    def encode_images(self, images, lengths, extras=None):
        if not extras or "clip" not in extras or "label" not in extras:
            raise AssertionError(f"encode_images called without its side inputs: {sorted(extras or {})}")
        assert extras["clip"].shape[0] == images.shape[0] == extras["label"].shape[0]
        SideVSE.calls.append("train" if self.training else "eval")
        bias = extras["clip"][:, :1].float().mean() * 0 + extras["label"].float().mean() * 0
        return super().encode_images(images, lengths) + bias


@register_model("test_side_vse", SideVSEConfig)
def _build(config, *, feature_dim, text: TextConfig, tokenizer):
    model = build_vse(config, feature_dim=feature_dim, text=text, tokenizer=tokenizer)
    side = SideVSE.__new__(SideVSE)
    side.__dict__ = model.__dict__
    return side


def test_a_model_with_side_inputs_trains_validates_and_evaluates(smoke_data, tmp_path, fast_config):
    SideVSE.calls.clear()
    config = fast_config(smoke_data, tmp_path, "side", "model.name=test_side_vse")
    summary = Trainer(config, progress=False).fit()
    assert summary["best_val"]["rsum"] > 0
    assert "train" in SideVSE.calls and "eval" in SideVSE.calls  # validation saw the side inputs too
    results = evaluate_trained(tmp_path / "side", ["f30k1k"], progress=False)
    assert results["f30k1k"]["metrics"]["rsum"] > 0


def test_score_of_global_models_is_float32_under_autocast(smoke_data):
    from itrlib.data.text import BertWordPieceTokenizer, resolve_bert_path

    model = build_vse(VSEConfig(embed_size=16), feature_dim=8, text=TextConfig(),
                      tokenizer=BertWordPieceTokenizer(resolve_bert_path("minilm")))
    img, cap = torch.randn(3, 16), torch.randn(5, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (img @ cap.T).dtype == torch.bfloat16  # what a plain matmul would give
        scores = model.score(img, cap)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, img @ cap.T)
