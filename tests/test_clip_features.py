"""CLIP image features (itrlib.data.clip_features) with a tiny randomly initialised CLIP saved to a temp folder."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from itrlib.cli import main
from itrlib.data.clip_features import (
    compute_clip_features,
    image_features,
    read_image_ids,
    resolve_image_paths,
    write_clip_features,
)
from itrlib.errors import DataError, WeightsNotFoundError

IMAGE_SIZE = 32
PROJECTION = 16
# COCO-style, Flickr30K-style and plain names; ids chosen so no stem ends with another id
FILES = {391895: "COCO_val2014_000000391895.jpg", 1000092795: "1000092795.jpg", 7: "7.png",
         522418: "COCO_train2014_000000522418.jpeg", 42: "img_00042.png"}
IDS = list(FILES)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    """A tiny random CLIPModel and a CLIPImageProcessor for 32x32 inputs, saved with save_pretrained."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 64, "max_position_embeddings": 16},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": IMAGE_SIZE, "patch_size": 8},
        projection_dim=PROJECTION)
    folder = tmp_path_factory.mktemp("clip") / "tiny-clip"
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                       crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory) -> Path:
    """Five distinct colour gradients (40x48, so resize and crop both act), JPEG and PNG."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "sub").mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:48]
    for i, (image_id, name) in enumerate(FILES.items()):
        base = rng.integers(0, 256, size=3)
        pixels = (base + np.stack([x * (i + 1), y * (5 - i), (x + y) * 2], axis=-1)) % 256
        target = folder / "sub" / name if image_id == 522418 else folder / name  # one in a subfolder
        Image.fromarray(pixels.astype(np.uint8)).save(target)
    (folder / "notes.txt").write_text("not an image 123\n")
    return folder


def _direct(clip_dir: Path, images_dir: Path, ids: list[int]) -> np.ndarray:
    """Reference: one image at a time through the same model and processor."""
    from transformers import CLIPImageProcessor, CLIPModel

    model = CLIPModel.from_pretrained(str(clip_dir), local_files_only=True).eval()
    processor = CLIPImageProcessor.from_pretrained(str(clip_dir), local_files_only=True)
    rows = []
    with torch.no_grad():
        for path in resolve_image_paths(images_dir, ids):
            with Image.open(path) as image:
                pixels = processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]
            rows.append(image_features(model, pixels)[0].numpy())
    return np.stack(rows)


def test_features_shape_dtype_and_match_direct_computation(clip_dir, images_dir):
    features = compute_clip_features(images_dir, IDS, clip_dir, batch_size=2, device="cpu", progress=False)
    assert features.shape == (len(IDS), PROJECTION) and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert np.abs(features - _direct(clip_dir, images_dir, IDS)).max() <= 1e-5
    assert not np.allclose(np.linalg.norm(features, axis=1), 1.0)  # not L2-normalised
    assert len({row.tobytes() for row in features}) == len(IDS)  # distinct images give distinct rows


def test_row_order_follows_ids_and_batch_size_does_not_matter(clip_dir, images_dir):
    base = compute_clip_features(images_dir, IDS, clip_dir, batch_size=1, device="cpu", progress=False)
    order = [3, 0, 4, 2, 1]
    permuted = compute_clip_features(images_dir, [IDS[i] for i in order], clip_dir, batch_size=1, device="cpu",
                                     progress=False)
    np.testing.assert_array_equal(permuted, base[order])  # one image per pass: identical arithmetic, exact
    for batch_size in (3, 64):
        other = compute_clip_features(images_dir, IDS, clip_dir, batch_size=batch_size, device="cpu",
                                      progress=False)
        assert np.abs(other - base).max() <= 1e-5


def test_resolve_prefers_exact_stem_and_finds_padded_ids(images_dir):
    paths = resolve_image_paths(images_dir, IDS)
    assert [p.name for p in paths] == [FILES[i] for i in IDS]
    assert paths[3].parent.name == "sub"


def test_caption_level_ids_give_the_same_rows(clip_dir, images_dir, tmp_path):
    per_image = tmp_path / "test_ids.txt"
    per_image.write_text("".join(f"{i}\n" for i in IDS))
    per_caption = tmp_path / "f30k" / "test_ids.txt"
    per_caption.parent.mkdir()
    per_caption.write_text("".join(f"{i}\n" * 5 for i in IDS))
    assert read_image_ids(per_image).tolist() == IDS
    assert read_image_ids(per_caption).tolist() == IDS
    a = np.load(write_clip_features(images_dir, per_image, clip_dir, device="cpu", progress=False))
    b = np.load(write_clip_features(images_dir, per_caption, clip_dir, device="cpu", progress=False))
    assert per_caption.with_name("test_clip.npy").is_file()
    np.testing.assert_array_equal(a, b)


def test_ids_with_precomp_features_beside_use_their_image_count(tmp_path):
    ids = tmp_path / "dev_ids.txt"
    ids.write_text("".join(f"{i}\n" * 5 for i in (3, 4)))
    np.save(tmp_path / "dev_ims.npy", np.zeros((10, 1, 2), dtype=np.float32))  # 10 images: one id per image
    assert read_image_ids(ids).tolist() == [3] * 5 + [4] * 5
    np.save(tmp_path / "dev_ims.npy", np.zeros((3, 1, 2), dtype=np.float32))
    with pytest.raises(DataError, match="expected 3"):
        read_image_ids(ids)


def test_missing_image_is_named_before_the_model_loads(images_dir, tmp_path):
    missing = [*IDS, 123456, *range(900, 906)]
    with pytest.raises(DataError) as info:
        compute_clip_features(images_dir, missing, tmp_path / "no-model", progress=False)
    text = str(info.value)
    assert "7 of 12" in text and "123456" in text and str(images_dir) in text and ", ..." in text
    assert "huggingface-cli" not in text


def test_absent_or_invalid_model_folder_says_how_to_provide_it(images_dir, tmp_path):
    for folder in (tmp_path / "absent", tmp_path):
        with pytest.raises(WeightsNotFoundError) as info:
            compute_clip_features(images_dir, IDS, folder, progress=False)
        assert "huggingface-cli download" in str(info.value) and str(folder) in str(info.value)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError, match="huggingface-cli download"):
        compute_clip_features(images_dir, IDS, tmp_path, progress=False)


def test_cli_writes_the_features(clip_dir, images_dir, tmp_path, capsys):
    ids = tmp_path / "precomp" / "testall_ids.txt"
    ids.parent.mkdir()
    ids.write_text("".join(f"{i}\n" * 5 for i in IDS))
    assert main(["data", "clip-features", "--images", str(images_dir), "--ids", str(ids), "--model", str(clip_dir),
                 "--batch-size", "2", "--device", "cpu", "--no-progress"]) == 0
    out = ids.with_name("testall_clip.npy")
    assert f"wrote {out}" in capsys.readouterr().out
    features = np.load(out)
    assert features.shape == (len(IDS), PROJECTION) and features.dtype == np.float32
    assert np.abs(features - _direct(clip_dir, images_dir, IDS)).max() <= 1e-5
    explicit = tmp_path / "elsewhere" / "x.npy"
    assert main(["data", "clip-features", "--images", str(images_dir), "--ids", str(ids), "--model", str(clip_dir),
                 "--out", str(explicit), "--no-progress", "--device", "cpu"]) == 0
    assert np.abs(np.load(explicit) - features).max() <= 1e-5  # batch 64 vs 2: float rounding only
    assert main(["data", "clip-features", "--images", str(images_dir), "--ids", str(ids), "--model",
                 str(tmp_path / "absent"), "--no-progress"]) == 2
    assert "huggingface-cli download" in capsys.readouterr().err
