"""Datasets and batches: determinism per (seed, epoch, item), region dropout, padding, extras, NaN at load."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from itrlib.data.collate import Batch, CaptionBatch, ImageBatch, pad_sequences
from itrlib.data.datasets import CaptionDataset, ImageDataset, PairDataset
from itrlib.data.precomp import open_split
from itrlib.data.text import BertWordPieceTokenizer, Vocabulary, resolve_bert_path
from itrlib.errors import ConfigError, DataError

N_IMG, K, D = 6, 36, 16


@pytest.fixture
def split(tmp_path):
    images = np.random.default_rng(0).standard_normal((N_IMG, K, D)).astype(np.float32)
    images[:, :, 0] = np.arange(K)  # feature 0 holds the region's position
    np.save(tmp_path / "test_ims.npy", images)
    words = "a dog cat man woman runs sits on the red grass bench near tree".split()
    captions = [" ".join(words[(c + j) % len(words)] for j in range(3 + c % 5)) for c in range(N_IMG * 5)]
    (tmp_path / "test_caps.txt").write_text("\n".join(captions) + "\n")
    (tmp_path / "test_ids.txt").write_text("\n".join(map(str, range(N_IMG))) + "\n")
    return open_split(tmp_path, "test")


@pytest.fixture
def vocab(split):
    return Vocabulary.build(split.captions)


@pytest.fixture(scope="module")
def bert():
    return BertWordPieceTokenizer(resolve_bert_path("minilm"))


def _same(a, b) -> bool:
    return (np.array_equal(a.image, b.image) and a.tokens == b.tokens and a.image_index == b.image_index
            and a.caption_index == b.caption_index)


def test_eval_pairs_are_complete_and_unaugmented(split, bert):
    ds = PairDataset(split, bert, train=False)
    assert len(ds) == 30
    item = ds[13]
    assert (item.image_index, item.caption_index) == (2, 13)
    np.testing.assert_array_equal(item.image, split.images[2])
    assert item.tokens == bert.encode(split.captions[13])


def test_train_items_depend_only_on_seed_epoch_and_index(split, bert):
    a = PairDataset(split, bert, train=True, seed=5)
    b = PairDataset(split, bert, train=True, seed=5)
    for index in (0, 17, 29):
        assert _same(a[index], b[index])
    assert [len(a[i].image) for i in range(30)] == [len(b[i].image) for i in reversed(range(30))][::-1]
    b.set_epoch(1)
    assert any(not np.array_equal(a[i].image, b[i].image) for i in range(30))
    a.set_epoch(1)
    assert all(_same(a[i], b[i]) for i in range(30))
    c = PairDataset(split, bert, train=True, seed=6)
    assert any(not np.array_equal(a[i].image, c[i].image) for i in range(30))


def test_worker_count_does_not_change_batches(split, vocab):
    ds = PairDataset(split, vocab, train=True, seed=1)
    ds.set_epoch(3)
    batches = []
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=7, collate_fn=ds.collate_fn, num_workers=workers)
        batches.append(list(loader))
    for x, y in zip(*batches, strict=True):
        assert torch.equal(x.images, y.images) and torch.equal(x.captions, y.captions)


def test_region_dropout_keeps_order_and_rate(split, vocab):
    ds = PairDataset(split, vocab, train=True, region_keep_prob=0.8)
    kept = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            positions = ds[i].image[:, 0]
            assert np.all(np.diff(positions) > 0)  # original order, packed to the front
            kept.append(len(positions))
            np.testing.assert_array_equal(ds[i].image, split.images[i // 5][positions.astype(int)])
    assert np.mean(kept) / K == pytest.approx(0.8, abs=0.03)
    full = PairDataset(split, vocab, train=True, region_keep_prob=1.0)
    assert all(len(full[i].image) == K for i in range(len(full)))
    with pytest.raises(ConfigError):
        PairDataset(split, vocab, train=True, region_keep_prob=0.0)


def test_no_surviving_region_keeps_all(split, vocab):
    ds = PairDataset(split, vocab, train=True, region_keep_prob=1e-9)
    assert len(ds[0].image) == K


def test_caption_augmentation_switch(split, bert):
    caption_index = max(range(30), key=lambda c: len(split.captions[c]))
    on = PairDataset(split, bert, train=True, caption_augment=True)
    off = PairDataset(split, bert, train=True, caption_augment=False)
    plain = bert.encode(split.captions[caption_index])
    changed = 0
    for epoch in range(20):
        on.set_epoch(epoch)
        off.set_epoch(epoch)
        assert off[caption_index].tokens == plain
        changed += on[caption_index].tokens != plain
    assert changed > 0


def test_collate_pairs_shapes_and_padding(split, bert):
    ds = PairDataset(split, bert, train=True, seed=2)
    items = [ds[i] for i in (0, 1, 7, 29)]
    batch = ds.collate_fn(items)
    assert isinstance(batch, Batch) and len(batch) == 4
    k_max = max(len(it.image) for it in items)
    l_max = max(len(it.tokens) for it in items)
    assert batch.images.shape == (4, k_max, D) and batch.images.dtype == torch.float32
    assert batch.captions.shape == (4, l_max) and batch.captions.dtype == torch.int64
    for row, it in enumerate(items):
        k, n = len(it.image), len(it.tokens)
        assert batch.image_lengths[row] == k and batch.caption_lengths[row] == n
        assert torch.equal(batch.images[row, :k], torch.from_numpy(it.image))
        assert not batch.images[row, k:].any()
        assert batch.captions[row, :n].tolist() == it.tokens
        assert (batch.captions[row, n:] == bert.pad_id).all()
    assert batch.image_index.tolist() == [0, 0, 1, 5] and batch.caption_index.tolist() == [0, 1, 7, 29]
    assert all(t.dtype == torch.int64 for t in (batch.image_lengths, batch.caption_lengths,
                                                batch.image_index, batch.caption_index))


def test_pad_sequences():
    padded, lengths = pad_sequences([[5, 6, 7], np.array([1])], pad_id=9)
    assert padded.tolist() == [[5, 6, 7], [1, 9, 9]] and lengths.tolist() == [3, 1]


def test_extras_follow_the_image(split, vocab):
    glob = np.arange(N_IMG * 4, dtype=np.float32).reshape(N_IMG, 4)
    ds = PairDataset(split, vocab, train=True, extras={"global": glob})
    batch = ds.collate_fn([ds[i] for i in (3, 12, 28)])
    assert batch.extras["global"].shape == (3, 4)
    np.testing.assert_array_equal(batch.extras["global"].numpy(), glob[[0, 2, 5]])
    images = ImageDataset(split, extras={"global": glob})
    assert torch.equal(images.collate_fn([images[4]]).extras["global"][0], torch.from_numpy(glob[4]))
    with pytest.raises(DataError, match=r"'global'.*one row per image"):
        PairDataset(split, vocab, train=True, extras={"global": glob[:3]})
    glob[5, 1] = np.nan
    with pytest.raises(DataError, match=r"'global'.*image 5 has non-finite"):
        ds[27]


def test_non_finite_features_are_caught_at_load(tmp_path, vocab):
    images = np.zeros((N_IMG, K, D), np.float32)
    images[3, 2, 1] = np.nan
    np.save(tmp_path / "test_ims.npy", images)
    (tmp_path / "test_caps.txt").write_text("".join(f"caption {c}\n" for c in range(N_IMG * 5)))
    (tmp_path / "test_ids.txt").write_text("".join(f"{i}\n" for i in range(N_IMG)))
    split = open_split(tmp_path, "test", check_features="none")
    for ds in (PairDataset(split, vocab, train=True), PairDataset(split, vocab, train=False)):
        ds[14]
        with pytest.raises(DataError, match=r"test_ims.npy: image 3 has non-finite"):
            ds[15]
    with pytest.raises(DataError, match=r"test_ims.npy: image 3"):
        ImageDataset(split)[3]


def test_eval_datasets_and_batches(split, bert):
    images, captions = ImageDataset(split), CaptionDataset(split, bert)
    assert (len(images), len(captions)) == (N_IMG, 30)
    ib = next(iter(DataLoader(images, batch_size=4, collate_fn=images.collate_fn)))
    assert isinstance(ib, ImageBatch) and ib.images.shape == (4, K, D)
    assert ib.image_lengths.tolist() == [K] * 4
    assert ib.image_index.tolist() == [0, 1, 2, 3] and ib.extras == {}
    cb = next(iter(DataLoader(captions, batch_size=5, collate_fn=captions.collate_fn)))
    assert isinstance(cb, CaptionBatch) and len(cb) == 5 and cb.caption_index.tolist() == [0, 1, 2, 3, 4]
    assert cb.captions[2, : cb.caption_lengths[2]].tolist() == bert.encode(split.captions[2])
    with pytest.raises(IndexError):
        captions[30]


def test_batch_to_moves_every_tensor(split, vocab):
    ds = PairDataset(split, vocab, train=False, extras={"global": np.ones((N_IMG, 2), np.float32)})
    batch = ds.collate_fn([ds[0], ds[9]])
    moved = batch.to("meta")
    assert moved is not batch and isinstance(moved, Batch)
    for name in ("images", "image_lengths", "captions", "caption_lengths", "image_index", "caption_index"):
        assert getattr(moved, name).device.type == "meta" and getattr(batch, name).device.type == "cpu"
    assert moved.extras["global"].device.type == "meta"
    same = batch.to("cpu", non_blocking=True)
    assert torch.equal(same.images, batch.images)
    assert torch.equal(same.extras["global"], batch.extras["global"])
