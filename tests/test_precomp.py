"""The precomp reader: layout discovery, validation errors (each naming the file), truncation, NaN checks."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from itrlib.data.precomp import PrecompSplit, check_finite, find_precomp_dir, open_split
from itrlib.errors import ConfigError, DataError

N_IMG, K, D, CPI = 6, 36, 16, 5


def write_precomp(folder: Path, split: str = "test", n_img: int = N_IMG, *, images: np.ndarray | None = None,
                  captions: list[str] | None = None, ids: list[str] | None = None) -> Path:
    """A tiny split: (n_img, 36, 16) float32 features, 5 captions per image, one id per image."""
    folder.mkdir(parents=True, exist_ok=True)
    if images is None:
        images = np.random.default_rng(0).standard_normal((n_img, K, D)).astype(np.float32)
    if captions is None:
        captions = [f"a photo number {c} of image {c // CPI}" for c in range(n_img * CPI)]
    if ids is None:
        ids = [str(100 + i) for i in range(n_img)]
    np.save(folder / f"{split}_ims.npy", images)
    (folder / f"{split}_caps.txt").write_text("".join(c + "\n" for c in captions), encoding="utf-8")
    (folder / f"{split}_ids.txt").write_text("".join(i + "\n" for i in ids), encoding="utf-8")
    return folder


@pytest.fixture
def data(tmp_path) -> Path:
    return write_precomp(tmp_path / "coco_precomp")


def test_open_reads_everything_memory_mapped(data):
    split = open_split(data, "test")
    assert isinstance(split, PrecompSplit) and split.root == data and split.split == "test"
    assert isinstance(split.images, np.memmap) and split.images.dtype == np.float32
    assert (split.n_images, split.n_regions, split.feature_dim) == (N_IMG, K, D)
    assert split.n_captions == N_IMG * CPI
    assert split.captions[7] == "a photo number 7 of image 1"
    assert split.image_ids.dtype == np.int64 and split.image_ids.tolist() == list(range(100, 106))
    assert split.images_path == data / "test_ims.npy"


def test_find_precomp_dir_accepts_both_conventions(tmp_path):
    write_precomp(tmp_path / "f30k" / "precomp")
    assert find_precomp_dir(tmp_path / "f30k") == tmp_path / "f30k" / "precomp"
    assert find_precomp_dir(tmp_path / "f30k" / "precomp") == tmp_path / "f30k" / "precomp"
    assert open_split(tmp_path / "f30k", "test").n_images == N_IMG
    (tmp_path / "other" / "coco_precomp").mkdir(parents=True)
    with pytest.raises(DataError, match=r"precomp.*coco_precomp"):
        find_precomp_dir(tmp_path / "other")
    with pytest.raises(DataError, match=r"does not exist"):
        find_precomp_dir(tmp_path / "nowhere")


def test_missing_files_are_all_listed(data):
    (data / "test_caps.txt").unlink()
    (data / "test_ids.txt").unlink()
    with pytest.raises(DataError, match=r"test_caps.txt.*test_ids.txt"):
        open_split(data, "test")
    with pytest.raises(DataError, match=r"dev_ims\.npy.*splits with features in .*: test"):
        open_split(data, "dev")


@pytest.mark.parametrize("array, found", [
    (np.zeros((N_IMG, K, D), np.float16), "float16"),
    (np.zeros((N_IMG, K * D), np.float32), r"\(6, 576\)"),
    (np.zeros((N_IMG, K, D), np.int64), "int64"),
])
def test_features_must_be_3d_float32(tmp_path, array, found):
    folder = write_precomp(tmp_path, images=array)
    with pytest.raises(DataError, match=f"test_ims.npy.*float32.*{found}"):
        open_split(folder, "test")


def test_unreadable_features(data):
    (data / "test_ims.npy").write_bytes(b"not a numpy file")
    with pytest.raises(DataError, match=r"test_ims.npy: cannot read"):
        open_split(data, "test")


def test_caption_count_mismatch_names_both_numbers(tmp_path):
    folder = write_precomp(tmp_path, captions=[f"caption {i}" for i in range(N_IMG)])
    with pytest.raises(DataError, match=r"test_caps.txt: 6 captions for 6 images.*expected 30.*im_div"):
        open_split(folder, "test")


def test_empty_caption_lines_are_reported_with_line_numbers(tmp_path):
    captions = [f"caption {i}" for i in range(N_IMG * CPI)]
    captions[3], captions[11] = "", "   \t"
    folder = write_precomp(tmp_path, captions=captions)
    with pytest.raises(DataError, match=r"test_caps.txt: 2 empty.*line 4, 12"):
        open_split(folder, "test")


def test_undecodable_utf8_gives_line_and_offset(data):
    raw = (data / "test_caps.txt").read_bytes().split(b"\n")
    raw[2] = b"caf\xe9 latte"
    (data / "test_caps.txt").write_bytes(b"\n".join(raw))
    with pytest.raises(DataError, match=r"test_caps.txt: not valid UTF-8 at line 3 \(byte offset \d+"):
        open_split(data, "test")


def test_captions_are_stripped_and_trailing_newline_optional(data):
    path = data / "test_caps.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[0] = "  padded caption \r"
    path.write_text("\n".join(lines), encoding="utf-8")  # no final newline
    split = open_split(data, "test")
    assert split.captions[0] == "padded caption" and split.n_captions == N_IMG * CPI


def test_ids_one_per_caption_take_every_fifth(tmp_path):
    folder = write_precomp(tmp_path, ids=[str(7 * (c // CPI)) for c in range(N_IMG * CPI)])
    assert open_split(folder, "test").image_ids.tolist() == [0, 7, 14, 21, 28, 35]


def test_ids_one_per_caption_must_repeat(tmp_path):
    ids = [str(c // CPI) for c in range(N_IMG * CPI)]
    ids[12] = "99"
    folder = write_precomp(tmp_path, ids=ids)
    with pytest.raises(DataError, match=r"test_ids.txt: .*lines 11-15 \(image 2\)"):
        open_split(folder, "test")


@pytest.mark.parametrize("ids, message", [
    ([str(i) for i in range(N_IMG + 1)], "7 ids, expected 6 .* or 30"),
    (["1", "2", "x3", "4", "5", "6"], "line 3 is not an integer"),
])
def test_bad_ids(tmp_path, ids, message):
    folder = write_precomp(tmp_path, ids=ids)
    with pytest.raises(DataError, match=f"test_ids.txt: {message}"):
        open_split(folder, "test")


def test_max_images_truncates_images_captions_ids(data):
    split = open_split(data, "test", max_images=4)
    assert (split.n_images, split.n_captions, len(split.image_ids)) == (4, 20, 4)
    assert isinstance(split.images, np.memmap)
    assert split.captions[-1] == "a photo number 19 of image 3"
    assert open_split(data, "test", max_images=1000).n_images == N_IMG  # fewer images: nothing to cut
    with pytest.raises(ConfigError):
        open_split(data, "test", max_images=0)


def test_nan_detection_modes(tmp_path):
    images = np.ones((N_IMG, K, D), np.float32)
    images[4, 10, 3] = np.nan
    images[5, 0, 0] = np.inf
    folder = write_precomp(tmp_path, images=images)
    with pytest.raises(DataError, match=r"test_ims.npy: image 4 has non-finite features.*2 bad"):
        open_split(folder, "test", check_features="full")
    with pytest.raises(DataError, match=r"image 4"):  # 6 images: the sample covers all of them
        open_split(folder, "test")
    split = open_split(folder, "test", check_features="none")
    assert split.n_images == N_IMG
    assert open_split(folder, "test", max_images=4, check_features="full").n_images == 4
    with pytest.raises(ConfigError, match=r"check_features"):
        open_split(folder, "test", check_features="some")


def test_full_check_scans_in_chunks(tmp_path):
    images = np.zeros((600, 2, 3), np.float32)
    images[517, 1, 2] = -np.inf
    folder = write_precomp(tmp_path, n_img=600, images=images)
    with pytest.raises(DataError, match=r"image 517"):
        open_split(folder, "test", check_features="full")
    assert open_split(folder, "test", check_features="sample").n_images == 600  # 517 is not sampled


def test_check_finite_index_forms(tmp_path):
    images = np.zeros((10, 2, 3), np.float32)
    images[6, 0, 1] = np.nan
    check_finite(images, slice(0, 6), "x.npy")
    for selector in (6, slice(4, 8), np.array([1, 6, 9])):
        with pytest.raises(DataError, match=r"x.npy: image 6"):
            check_finite(images, selector, "x.npy")


def test_pickling_reopens_the_memory_map(data):
    split = open_split(data, "test", max_images=4)
    blob = pickle.dumps(split)
    assert len(blob) < split.images.nbytes  # the features are not copied into the pickle
    copy = pickle.loads(blob)
    assert isinstance(copy.images, np.memmap) and np.array_equal(copy.images, split.images)
    assert (copy.root, copy.split, copy.captions, copy.caps_per_image) == (data, "test", split.captions, 5)
    assert np.array_equal(copy.image_ids, split.image_ids)
    plain = PrecompSplit(data, "x", np.ones((1, 2, 3), np.float32), ["c"] * 5, np.zeros(1, np.int64))
    assert np.array_equal(pickle.loads(pickle.dumps(plain)).images, plain.images)


def test_synthetic_dataset_passes_full_check(smoke_data):
    for split in ("train", "dev", "test", "testall"):
        data = open_split(smoke_data, split, check_features="full")
        assert data.n_captions == 5 * data.n_images and data.n_regions == 36
