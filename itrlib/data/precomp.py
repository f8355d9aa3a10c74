"""Reader of the SCAN / VSE∞ "precomp" layout: ``{split}_ims.npy``, ``{split}_caps.txt``, ``{split}_ids.txt``.

``{split}_ims.npy`` is a float32 array (N_img, K, D) of region features (K = 36 BUTD boxes in the public
releases), opened as a read-only memory map. ``{split}_caps.txt`` holds ``caps_per_image`` consecutive
caption lines per image: caption ``c`` belongs to image ``c // caps_per_image``. ``{split}_ids.txt`` holds one
integer image id per image, or one per caption (the SCAN release repeats each id for its 5 captions).

Every inconsistency raises :class:`~itrlib.errors.DataError` naming the file; nothing is truncated or
skipped silently. The only truncation is the explicit ``max_images`` request (every official loader keeps
the first 1,000 images = 5,000 captions of ``dev`` for per-epoch validation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from itrlib.errors import ConfigError, DataError

SPLITS = ("train", "dev", "test", "testall")
CHECK_MODES = ("full", "sample", "none")
FULL_CHECK_CHUNK = 256  # images per read when scanning every feature for NaN/inf
SAMPLE_CHECK_IMAGES = 64  # evenly spaced images checked in "sample" mode (plus the first and the last)
_MAX_LISTED = 5  # bad line numbers quoted in an error message


@dataclass(frozen=True, eq=False)
class PrecompSplit:
    """One split of a precomp dataset.

    images: (N_img, K, D) float32 memory map; captions: N_img * caps_per_image stripped strings, caption c
    belongs to image c // caps_per_image; image_ids: (N_img,) int64.
    """

    root: Path
    split: str
    images: np.ndarray
    captions: list[str]
    image_ids: np.ndarray
    caps_per_image: int = 5
    source_images: int | None = None
    """Images in the files when the split was cut to its first ``max_images`` (``None``: not cut)."""

    @property
    def n_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_captions(self) -> int:
        return len(self.captions)

    @property
    def n_regions(self) -> int:
        """K, the number of regions per image."""
        return int(self.images.shape[1])

    @property
    def feature_dim(self) -> int:
        """D, the size of one region feature."""
        return int(self.images.shape[2])

    @property
    def images_path(self) -> Path:
        return self.root / f"{self.split}_ims.npy"

    def __reduce__(self) -> tuple:
        """Pickle a memory map as its file path, not its data (DataLoader workers under spawn/forkserver)."""
        if isinstance(self.images, np.memmap) and self.images.filename is not None:
            return (_reopen, (Path(self.images.filename), self.n_images, self.root, self.split, self.captions,
                              self.image_ids, self.caps_per_image, self.source_images))
        return (PrecompSplit, (self.root, self.split, self.images, self.captions, self.image_ids,
                               self.caps_per_image, self.source_images))


def find_precomp_dir(path: str | Path) -> Path:
    """The folder holding ``{split}_ims.npy`` / ``{split}_caps.txt``: ``path`` itself or ``path/precomp``.

    The first is the SCAN/MVSEN convention (``<data_path>/<data_name>``), the second the VSE∞/USER one
    (``<data_path>/precomp``).
    """
    base = Path(path).expanduser()
    if not base.is_dir():
        raise DataError(f"data folder {base} does not exist or is not a folder")
    candidates = [base, base / "precomp"]
    for folder in candidates:
        if folder.is_dir() and (any(folder.glob("*_ims.npy")) or any(folder.glob("*_caps.txt"))):
            return folder
    hint = sorted(p.name for p in base.iterdir() if p.is_dir() and p.name.endswith("_precomp"))
    more = f"; sub-folders that may hold it: {', '.join(hint)}" if hint else ""
    raise DataError(f"no precomp data found: looked for {{split}}_ims.npy / {{split}}_caps.txt files in "
                    f"{candidates[0]} and {candidates[1]}{more}")


def open_split(root: str | Path, split: str, *, max_images: int | None = None, caps_per_image: int = 5,
               check_features: str = "sample") -> PrecompSplit:
    """Open and validate one split; keep only the first ``max_images`` images (and their captions) if given.

    check_features: "full" scans every image for NaN/inf, "sample" the first, the last and about 64 evenly
    spaced images, "none" nothing (the datasets still check each image when it is loaded).
    """
    if check_features not in CHECK_MODES:
        raise ConfigError(f"check_features={check_features!r}: expected one of {', '.join(CHECK_MODES)}")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int)
                                   or max_images < 1):
        raise ConfigError(f"max_images={max_images!r}: expected a positive integer or None")
    if caps_per_image < 1:
        raise ConfigError(f"caps_per_image={caps_per_image!r}: expected a positive integer")
    folder = find_precomp_dir(root)
    paths = {kind: folder / f"{split}_{kind}" for kind in ("ims.npy", "caps.txt", "ids.txt")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        found = sorted({p.name.rsplit("_", 1)[0] for p in folder.glob("*_ims.npy")})
        raise DataError(f"split {split!r}: missing file(s) {', '.join(missing)} "
                        f"(splits with features in {folder}: {', '.join(found) or 'none'})")

    images = _load_features(paths["ims.npy"])
    n_images = int(images.shape[0])
    captions = read_captions(paths["caps.txt"])
    check_caption_count(paths["caps.txt"], len(captions), paths["ims.npy"], n_images, caps_per_image)
    image_ids = read_ids(paths["ids.txt"], n_images, caps_per_image)

    source_images = None
    if max_images is not None and max_images < n_images:
        source_images, n_images = n_images, max_images
        images = images[:n_images]
        captions = captions[: n_images * caps_per_image]
        image_ids = image_ids[:n_images]

    if check_features == "full":
        for start in range(0, n_images, FULL_CHECK_CHUNK):
            check_finite(images, slice(start, start + FULL_CHECK_CHUNK), paths["ims.npy"])
    elif check_features == "sample":
        sample = np.linspace(0, n_images - 1, SAMPLE_CHECK_IMAGES + 2).round().astype(np.int64)
        check_finite(images, np.unique(sample), paths["ims.npy"])
    return PrecompSplit(root=folder, split=split, images=images, captions=captions, image_ids=image_ids,
                        caps_per_image=caps_per_image, source_images=source_images)


def check_caption_count(captions_path: Path, n_captions: int, images_path: Path, n_images: int,
                        caps_per_image: int) -> None:
    """A :class:`DataError` naming both files unless there are ``caps_per_image`` captions per image."""
    if n_captions != n_images * caps_per_image:
        raise DataError(
            f"{captions_path}: {n_captions} captions for {n_images} images in {images_path}; "
            f"expected {n_images * caps_per_image} ({caps_per_image} consecutive captions per image). The "
            "SCAN/VSE∞ 'im_div' fallback (one caption per image when the counts are equal) is not supported.")


def count_images(path: Path) -> int:
    """N_img of a ``{split}_ims.npy`` (read from its header: a memory map, no feature is loaded)."""
    return int(_load_features(path).shape[0])


def check_finite(images: np.ndarray, index_or_slice: int | slice | np.ndarray, path: str | Path) -> None:
    """Raise DataError naming ``path`` and the first image (along axis 0) whose features hold NaN or inf.

    index_or_slice selects images of ``images`` (N_img, K, D): an int, a slice or an integer array.
    """
    block = np.asarray(images[index_or_slice])
    if np.isfinite(block).all():
        return
    indices = np.atleast_1d(np.arange(images.shape[0])[index_or_slice])
    rows = block.reshape(len(indices), -1)
    bad = indices[~np.isfinite(rows).all(axis=1)]
    raise DataError(f"{path}: image {int(bad[0])} has non-finite features (NaN or inf); "
                    f"{len(bad)} bad image(s) among the {len(indices)} checked")


def _reopen(images_path: Path, n_images: int, root: Path, split: str, captions: list[str],
            image_ids: np.ndarray, caps_per_image: int, source_images: int | None) -> PrecompSplit:
    """Unpickle a split whose features are the first ``n_images`` images of ``images_path``."""
    images = np.load(images_path, mmap_mode="r")[:n_images]
    return PrecompSplit(root, split, images, captions, image_ids, caps_per_image, source_images)


def _load_features(path: Path) -> np.ndarray:
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as a .npy array ({exc})") from exc
    if not isinstance(images, np.ndarray):
        raise DataError(f"{path}: expected a single .npy array, found {type(images).__name__}")
    if images.ndim != 3 or images.dtype != np.float32:
        hint = (" Convert it once with np.save(path, np.load(path).astype(np.float32))."
                if images.ndim == 3 and np.issubdtype(images.dtype, np.floating) else "")
        raise DataError(f"{path}: expected a float32 array (N_img, K regions, D), found dtype {images.dtype} "
                        f"shape {images.shape}.{hint}")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"{path}: empty feature array of shape {images.shape}")
    return images


def read_lines(path: Path) -> list[str]:
    """UTF-8 lines without their line ends; a final newline does not start an extra line."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: not valid UTF-8 at line {line} (byte offset {exc.start}: "
                        f"{raw[exc.start:exc.start + 4]!r})") from exc
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")  # not splitlines(): it would also split on \x0b, \x1c, U+2028, ...
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_captions(path: Path) -> list[str]:
    # Each line is stripped of surrounding whitespace, as the VSE∞/SCAN loaders do (line.strip()).
    captions = [line.strip() for line in read_lines(path)]
    empty = [i + 1 for i, caption in enumerate(captions) if not caption]
    if empty:
        listed = ", ".join(map(str, empty[:_MAX_LISTED])) + (", ..." if len(empty) > _MAX_LISTED else "")
        raise DataError(f"{path}: {len(empty)} empty or whitespace-only caption line(s): line {listed}")
    return captions


def read_ids(path: Path, n_images: int, caps_per_image: int) -> np.ndarray:
    """(n_images,) int64 image ids of ``{split}_ids.txt``: one line per image, or ``caps_per_image`` per image
    (every ``caps_per_image``-th is kept); malformed lines and other counts are DataErrors naming the line."""
    lines = read_lines(path)
    values = []
    for number, line in enumerate(lines, start=1):
        try:
            values.append(int(line.strip()))
        except ValueError:
            raise DataError(f"{path}: line {number} is not an integer image id: {line!r}") from None
    ids = np.asarray(values, dtype=np.int64)
    if len(ids) == n_images:
        return ids
    if len(ids) == n_images * caps_per_image:
        # One id per caption (SCAN release): the caps_per_image lines of an image must repeat its id.
        per_caption = ids.reshape(n_images, caps_per_image)
        wrong = np.flatnonzero((per_caption != per_caption[:, :1]).any(axis=1))
        if len(wrong):
            image = int(wrong[0])
            raise DataError(f"{path}: one id per caption, but lines {image * caps_per_image + 1}-"
                            f"{(image + 1) * caps_per_image} (image {image}) do not repeat one id: "
                            f"{per_caption[image].tolist()}")
        return np.ascontiguousarray(per_caption[:, 0])
    raise DataError(f"{path}: {len(ids)} ids, expected {n_images} (one per image) or "
                    f"{n_images * caps_per_image} (one per caption) for {n_images} images")
