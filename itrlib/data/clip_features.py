"""One CLIP image embedding per image, stored beside the precomp files as ``{split}_clip.npy`` (USER's CGE input).

The embedding is ``CLIPModel.get_image_features``: the vision tower's CLS token after the post-layernorm and the
visual projection (512-d for ViT-B/32). It is NOT L2-normalised; normalising is the consumer's choice. Rows follow
the order of ``{split}_ids.txt`` (one id per image, or one per caption repeated ``caps_per_image`` times).

Images are looked up in a folder (and its subfolders) by id: ``<id>.jpg``/``.jpeg``/``.png``, or any image whose
file stem ends with the (possibly zero-padded) id, e.g. COCO's ``COCO_val2014_000000391895.jpg`` for 391895 or
Flickr30K's ``1000092795.jpg``. Weights are read from a local folder only; nothing is downloaded at run time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from itrlib.data.precomp import read_ids, read_lines
from itrlib.devices import resolve_device
from itrlib.errors import DataError, ItrlibError, WeightsNotFoundError
from itrlib.io import atomic_save
from itrlib.progress import progress_bar, progress_mode

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
"""File suffixes (any case) searched for images."""
OUTPUT_NAME = "{split}_clip.npy"
"""Standard name of the output beside ``{split}_ids.txt``."""
DEFAULT_MODEL = "openai/clip-vit-base-patch32"
_MAX_LISTED = 5
_TRAILING_DIGITS = re.compile(r"(\d+)$")


def how_to_provide_clip(name: str = DEFAULT_MODEL) -> str:
    """How to put CLIP weights on this machine (the sentence ending every missing-weights error)."""
    folder = f"/models/{name.split('/')[-1]}"
    return (f"Nothing is downloaded at run time. On a machine with internet access run "
            f"`huggingface-cli download {name} --local-dir {folder}` (or `hf download {name} --local-dir "
            f"{folder}`), copy that folder here and pass --model {folder}.")


def read_image_ids(path: str | os.PathLike, caps_per_image: int = 5) -> np.ndarray:
    """Image ids of a precomp ``{split}_ids.txt``: (N_img,) int64, one per image in file order.

    A file with one id per caption (each id repeated ``caps_per_image`` times on consecutive lines) gives every
    ``caps_per_image``-th id. When ``{split}_ims.npy`` lies beside it, its image count decides, as in
    :func:`itrlib.data.precomp.open_split`; otherwise a file whose consecutive groups all repeat one id is read
    as one id per caption.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"ids file not found: {path}")
    ids = read_ids(path, len(read_lines(path)), caps_per_image)  # parses and validates every line
    if not len(ids):
        raise DataError(f"{path}: no image ids")
    features = path.with_name(path.name.removesuffix("ids.txt") + "ims.npy") if path.name.endswith(
        "_ids.txt") else None
    if features is not None and features.is_file():
        n_images = int(np.load(features, mmap_mode="r").shape[0])
        return read_ids(path, n_images, caps_per_image)
    if len(ids) % caps_per_image == 0:
        groups = ids.reshape(-1, caps_per_image)
        if (groups == groups[:, :1]).all():
            return np.ascontiguousarray(groups[:, 0])
    return ids


def default_output_path(ids_path: str | os.PathLike) -> Path:
    """``{split}_clip.npy`` beside ``{split}_ids.txt``; an ids file named otherwise has no default."""
    ids_path = Path(ids_path)
    if not ids_path.name.endswith("_ids.txt") or ids_path.name == "_ids.txt":
        raise ItrlibError(f"{ids_path} is not named {{split}}_ids.txt, so there is no default output: pass --out")
    return ids_path.with_name(OUTPUT_NAME.format(split=ids_path.name.removesuffix("_ids.txt")))


def index_images(images_dir: str | os.PathLike) -> dict[int, list[Path]]:
    """Trailing number of each image's file stem -> the image files ending with it (one scan of the folder)."""
    folder = Path(images_dir)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    index: dict[int, list[Path]] = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            stem, suffix = os.path.splitext(name)
            match = _TRAILING_DIGITS.search(stem)
            if suffix.lower() in IMAGE_SUFFIXES and match:
                index.setdefault(int(match.group(1)), []).append(Path(root) / name)
    return index


def resolve_image_paths(images_dir: str | os.PathLike, ids: Sequence[int]) -> list[Path]:
    """The image file of each id, in order; a missing or ambiguous id is a :class:`DataError` naming it."""
    index = index_images(images_dir)
    paths: list[Path] = []
    missing: list[int] = []
    for image_id in map(int, ids):
        found = index.get(image_id, [])
        exact = [p for p in found if os.path.splitext(p.name)[0] == str(image_id)]
        candidates = exact or found
        if not candidates:
            missing.append(image_id)
        elif len(candidates) > 1:
            listed = ", ".join(str(p) for p in candidates[:_MAX_LISTED])
            raise DataError(f"image id {image_id}: {len(candidates)} files in {images_dir} match it ({listed})")
        else:
            paths.append(candidates[0])
    if missing:
        listed = ", ".join(map(str, missing[:_MAX_LISTED])) + (", ..." if len(missing) > _MAX_LISTED else "")
        raise DataError(f"{len(missing)} of {len(ids)} image(s) not found in {images_dir} (looked for "
                        f"<id>.jpg/.jpeg/.png or a file stem ending with the zero-padded id): id {listed}")
    return paths


def load_clip(model_path: str | os.PathLike) -> tuple[Any, Any]:
    """``(CLIPModel in eval mode, float32, on CPU; CLIPImageProcessor)`` from a local folder only."""
    path = Path(model_path).expanduser()
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "has no config.json"
        raise WeightsNotFoundError(f"CLIP model folder {path} {what}, so it is not a Hugging Face model folder. "
                                   + how_to_provide_clip())
    from transformers import CLIPImageProcessor, CLIPModel
    from transformers.utils import logging as hf_logging

    if progress_mode() != "bars":
        hf_logging.disable_progress_bar()
    try:
        model = CLIPModel.from_pretrained(str(path), local_files_only=True)
        processor = CLIPImageProcessor.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise WeightsNotFoundError(f"could not load a CLIP model and image processor from {path}: {exc}. "
                                   + how_to_provide_clip()) from exc
    return model.float().eval(), processor


def image_features(model: Any, pixel_values: Any) -> Any:
    """(B, 3, H, W) pixels -> (B, d) projected CLS embeddings (not normalised), for transformers 4.x and 5.x."""
    out = model.get_image_features(pixel_values=pixel_values)
    return out if hasattr(out, "shape") else out.pooler_output


def compute_clip_features(images_dir: str | os.PathLike, ids: Sequence[int], model_path: str | os.PathLike, *,
                          batch_size: int = 64, device: str = "auto", progress: bool = True) -> np.ndarray:
    """(N, d) float32 CLIP image embeddings, row i for ``ids[i]`` (not L2-normalised).

    Every image is found before the model is loaded, so a missing one fails fast.
    """
    if batch_size < 1:
        raise ItrlibError(f"batch size must be >= 1, got {batch_size}")
    paths = resolve_image_paths(images_dir, ids)
    torch_device = resolve_device(device, "--device")
    model, processor = load_clip(model_path)
    model.to(torch_device)
    import torch
    from PIL import Image

    dim = int(model.config.projection_dim)
    out = np.empty((len(paths), dim), dtype=np.float32)
    starts = range(0, len(paths), batch_size)
    with torch.no_grad():
        for start in progress_bar(starts, desc="CLIP image features", unit="batch", enabled=progress):
            batch = paths[start:start + batch_size]
            images = []
            for file in batch:
                with Image.open(file) as image:
                    images.append(image.convert("RGB"))
            pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(torch_device)
            out[start:start + len(batch)] = image_features(model, pixels).float().cpu().numpy()
    return out


def write_clip_features(images_dir: str | os.PathLike, ids_path: str | os.PathLike, model_path: str | os.PathLike,
                        out: str | os.PathLike | None = None, *, batch_size: int = 64, device: str = "auto",
                        caps_per_image: int = 5, progress: bool = True) -> Path:
    """Compute the features of the ids in ``ids_path`` and save them atomically as (N, d) float32 ``.npy``.

    ``out`` defaults to ``{split}_clip.npy`` beside ``{split}_ids.txt``. Returns the written path.
    """
    target = Path(out) if out is not None else default_output_path(ids_path)
    ids = read_image_ids(ids_path, caps_per_image)
    features = compute_clip_features(images_dir, ids.tolist(), model_path, batch_size=batch_size, device=device,
                                     progress=progress)
    atomic_save(target, lambda handle: np.save(handle, features))
    return target
