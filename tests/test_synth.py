"""The embedded synthetic dataset: layout, determinism, twins, captions, labels, presets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from itrlib.data.synth import (
    _SUPERCLASS,
    CATEGORIES,
    LABELS_VOCAB,
    N_LABELS,
    N_REGIONS,
    SIZES,
    SPLITS,
    SynthConfig,
    caption_words,
    mentioned_categories,
    read_scenes,
    write_synthetic,
)
from itrlib.errors import ConfigError

DIM = 64


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(
        tmp_path_factory.mktemp("synth") / "a", "smoke", seed=0, feature_dim=DIM, progress=False
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _captions(folder: Path, split: str) -> list[str]:
    return (folder / f"{split}_caps.txt").read_text(encoding="utf-8").splitlines()


def test_layout(smoke: Path) -> None:
    for split in SPLITS:
        n = SIZES["smoke"][split]
        ims = np.load(smoke / f"{split}_ims.npy")
        assert ims.shape == (n, N_REGIONS, DIM) and ims.dtype == np.float32
        assert np.isfinite(ims).all() and (ims >= 0).all()
        assert 0.3 < (ims == 0).mean() < 0.9 and 0.1 < ims.mean() < 1.5  # BUTD-like: sparse, non-negative
        assert (np.abs(ims).sum(axis=2) > 0).mean() > 0.95  # almost no all-zero boxes
        caps = _captions(smoke, split)
        assert len(caps) == 5 * n and all(c.strip() == c and c for c in caps)
        for i in range(n):  # the 5 captions of an image are distinct
            assert len(set(caps[5 * i : 5 * i + 5])) == 5
        ids = [int(x) for x in (smoke / f"{split}_ids.txt").read_text().splitlines()]
        assert len(ids) == n == len(set(ids))
        glob = np.load(smoke / f"{split}_clip.npy")
        assert glob.shape == (n, 512) and glob.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(glob, axis=1), 1.0, atol=1e-5)
        scenes = read_scenes(smoke, split)
        assert len(scenes) == n and [s["id"] for s in scenes] == ids
    all_ids = [int(x) for s in SPLITS for x in (smoke / f"{s}_ids.txt").read_text().splitlines()]
    assert len(all_ids) == len(set(all_ids))
    card = json.loads((smoke / "dataset_card.json").read_text())
    assert card["feature_dim"] == DIM and card["size"] == "smoke" and card["seed"] == 0
    assert {s: card["splits"][s]["images"] for s in SPLITS} == SIZES["smoke"]
    assert card["vocab_sizes"]["labels"] == N_LABELS and card["vocab_sizes"]["categories"] == len(CATEGORIES)
    assert "NOT natural images" in (smoke / "README.md").read_text()


def test_deterministic_and_seed_dependent(smoke: Path, tmp_path: Path) -> None:
    again = write_synthetic(tmp_path / "b", "smoke", seed=0, feature_dim=DIM, progress=False)
    assert _files(again) == _files(smoke)
    other = write_synthetic(tmp_path / "c", "smoke", seed=1, feature_dim=DIM, progress=False)
    for split in SPLITS:
        assert _captions(other, split) != _captions(smoke, split)
        assert not np.array_equal(np.load(other / f"{split}_ims.npy"), np.load(smoke / f"{split}_ims.npy"))


def test_content_independent_of_feature_dim_and_difficulty(smoke: Path, tmp_path: Path) -> None:
    hard = write_synthetic(
        tmp_path / "d", "smoke", feature_dim=32, progress=False, config=SynthConfig(difficulty=2)
    )
    for name in ("test_caps.txt", "test_label.txt", "test_scenes.jsonl", "test_ids.txt"):
        assert (hard / name).read_bytes() == (smoke / name).read_bytes()
    assert np.load(hard / "test_ims.npy").shape == (40, N_REGIONS, 32)
    assert not np.array_equal(np.load(hard / "test_clip.npy"), np.load(smoke / "test_clip.npy"))
    card = json.loads((hard / "dataset_card.json").read_text())
    assert card["effective_noise"]["region_noise"] == pytest.approx(2 * SynthConfig().region_noise)


def test_twins(smoke: Path) -> None:
    for split in SPLITS:
        scenes = read_scenes(smoke, split)
        caps = _captions(smoke, split)
        twins = [i for i, s in enumerate(scenes) if s["twin"] is not None]
        assert 0.15 < len(twins) / len(scenes) < 0.45
        for i in twins:
            j = scenes[i]["twin"]
            a, b = scenes[i], scenes[j]
            assert abs(i - j) == 1 and b["twin"] == i and a["twin_kind"] == b["twin_kind"]
            if split == "testall":  # never straddles a fold of the 5-fold protocol
                fold = SIZES["smoke"]["testall"] // 5
                assert i // fold == j // fold
            assert a["scene"] == b["scene"]
            assert [o["category"] for o in a["objects"]] == [o["category"] for o in b["objects"]]
            if a["twin_kind"] == "attribute_swap":
                assert a["relations"] == b["relations"]
                assert sorted(map(sorted, (o["attributes"] for o in a["objects"]))) == sorted(
                    map(sorted, (o["attributes"] for o in b["objects"]))
                )
                assert a["objects"] != b["objects"]
            else:
                assert a["twin_kind"] == "relation_change" and a["objects"] == b["objects"]
                assert a["relations"] != b["relations"]
            for k in range(5):  # aligned captions name the same objects, only binding words change
                ca, cb = caps[5 * i + k], caps[5 * j + k]
                assert mentioned_categories(ca) == mentioned_categories(cb)


def test_captions_describe_only_their_image(smoke: Path) -> None:
    article_error = re.compile(r"\ba [aeiou]|\ban [^aeiou\s]")
    for split in SPLITS:
        scenes = read_scenes(smoke, split)
        for c, cap in enumerate(_captions(smoke, split)):
            cats = {o["category"] for o in scenes[c // 5]["objects"]}
            assert mentioned_categories(cap) <= cats, cap
            assert not article_error.search(cap.lower()), cap  # a/an agreement
            assert re.fullmatch(r"[A-Za-z ,]+\.?", cap), cap


def test_labels(smoke: Path) -> None:
    vocab = (smoke / "labels_vocab.txt").read_text().splitlines()
    assert tuple(vocab) == LABELS_VOCAB and len(vocab) == N_LABELS == len(set(vocab))
    plural = {s: p for c in CATEGORIES for s, p in c.synonyms}
    superclass_plural = dict(_SUPERCLASS.values())  # "two animals" labels the image with "animal"
    for split in SPLITS:
        lines = (smoke / f"{split}_label.txt").read_text().splitlines()
        caps = _captions(smoke, split)
        assert len(lines) == SIZES["smoke"][split]
        for i, line in enumerate(lines):
            bits = [int(x) for x in line.split(" ")]
            assert len(bits) == N_LABELS and set(bits) <= {0, 1} and sum(bits) >= 1
            words = {w for cap in caps[5 * i : 5 * i + 5] for w in caption_words(cap)}
            for noun, bit in zip(vocab, bits, strict=True):
                present = noun in words or plural.get(noun) in words
                if noun in plural:  # category nouns: the label is exactly "used in a caption"
                    assert bit == present, (noun, caps[5 * i : 5 * i + 5])
                elif bit:
                    assert present or superclass_plural.get(noun) in words, noun


def test_size_presets_and_errors(tmp_path: Path) -> None:
    assert SIZES["smoke"] == {"train": 120, "dev": 40, "test": 40, "testall": 50}
    assert SIZES["small"] == {"train": 1000, "dev": 200, "test": 200, "testall": 500}
    assert SIZES["medium"] == {"train": 5000, "dev": 1000, "test": 1000, "testall": 5000}
    assert all(s["testall"] % 5 == 0 for s in SIZES.values())
    with pytest.raises(ConfigError, match="unknown synthetic size"):
        write_synthetic(tmp_path, "huge", progress=False)
    with pytest.raises(ConfigError, match="feature_dim"):
        write_synthetic(tmp_path, "smoke", feature_dim=0, progress=False)
    with pytest.raises(ConfigError, match="twin_fraction"):
        SynthConfig(twin_fraction=1.5)
    with pytest.raises(ConfigError, match="difficulty"):
        SynthConfig(difficulty=-1)
    assert not list(tmp_path.iterdir())
