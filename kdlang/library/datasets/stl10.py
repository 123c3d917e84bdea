"""STL-10: 5k/8k labelled 96x96 colour images in 10 classes, from the official binary files.

Expected layout under ``root`` (exactly what torchvision downloads):
``stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, class_names.txt}``.
The unlabelled split is not read. ``class_names.txt`` is optional (the
official names are built in).

An ``*_X.bin`` file is raw uint8, 3x96x96 values per image, each channel
stored column-major (as written by MATLAB), so the bytes are read as
``[N, 3, 96, 96]`` and the last two axes swapped. ``*_y.bin`` holds one uint8
label per image in 1..10; we subtract 1.

`size` (default 32, as in the CIFAR-to-STL-10 linear-probe transfer
experiments) resizes every image once at load time with antialiased bilinear
interpolation (see `resize`); ``size=96`` keeps the native resolution.
Decoded tensors are memoised in-process (keyed by path, mtime and size).
torchvision is used solely for ``download=True``, after which the files are
read the same way.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from .base import DatasetInfo, RawData, resolve_root
from .errors import DataError
from .resize import check_size, resize_uint8

FOLDER = "stl10_binary"
ARCHIVE_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
NATIVE = 96
SPLIT_FILES = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin")}
NAMES_FILE = "class_names.txt"

CLASS_NAMES = (
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
)

INFO = DatasetInfo(
    name="stl10",
    input_shape=(3, 32, 32),  # follows `size`; see `info`
    num_classes=10,
    mean=(0.4468, 0.4399, 0.4068),
    std=(0.2419, 0.2384, 0.2541),
    kwargs={"size": 32},
    description="STL-10: 5k/8k 96x96 colour images, 10 classes, resized to size x size (default 32)",
)


def input_shape(size) -> tuple[int, int, int]:
    return (3, check_size("stl10", size), check_size("stl10", size))


def _missing(directory: Path) -> list[str]:
    wanted = [name for pair in SPLIT_FILES.values() for name in pair]
    return [name for name in wanted if not (directory / name).is_file()]


def _read_split(directory: Path, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x_name, y_name = SPLIT_FILES[split]
    try:
        pixels = np.fromfile(directory / x_name, dtype=np.uint8)
        labels = np.fromfile(directory / y_name, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read STL-10 {split} files in {directory}: {exc}", "re-download the data set") from None
    per_image = 3 * NATIVE * NATIVE
    if pixels.size % per_image or pixels.size // per_image != labels.size:
        raise DataError(
            f"STL-10 {split} files in {directory} disagree: {x_name} has {pixels.size} bytes "
            f"({pixels.size / per_image:g} images of 3x96x96) but {y_name} has {labels.size} labels",
            "the files are truncated or corrupt; re-download the data set",
        )
    if labels.size and (labels.min() < 1 or labels.max() > len(CLASS_NAMES)):
        raise DataError(
            f"STL-10 {split} labels in {directory / y_name} span [{labels.min()}, {labels.max()}], not 1..10",
            "the files are corrupt or of another data set; re-download them",
        )
    # Column-major per channel: [N, 3, W, H] in row-major terms, hence the transpose.
    images = torch.from_numpy(pixels).view(-1, 3, NATIVE, NATIVE).transpose(2, 3)
    return resize_uint8(images, size), torch.from_numpy(labels.astype(np.int64) - 1)


def _class_names(directory: Path) -> tuple[str, ...]:
    try:
        names = tuple(line.strip() for line in (directory / NAMES_FILE).read_text().splitlines() if line.strip())
    except (OSError, UnicodeDecodeError):
        return CLASS_NAMES
    return names if len(names) == len(CLASS_NAMES) else CLASS_NAMES


@functools.lru_cache(maxsize=2)
def _decode(directory: Path, size: int, stamps: tuple[int, ...]) -> RawData:
    """Both splits of `directory` at `size`; `stamps` (mtimes) only key the cache."""
    train_images, train_labels = _read_split(directory, "train", size)
    test_images, test_labels = _read_split(directory, "test", size)
    return RawData(train_images, train_labels, test_images, test_labels, _class_names(directory), str(directory))


def _download(root: Path) -> None:
    from torchvision import datasets as tv

    try:
        tv.STL10(str(root), split="train", download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"downloading STL-10 into {root} failed: {exc}",
            f"fetch {ARCHIVE_URL} by other means and extract it into {root}",
        ) from None


def load(root=None, download: bool = False, size: int = 32) -> RawData:
    """Decoded STL-10 train/test splits from ``root/stl10_binary``, resized to `size`."""
    size = check_size("stl10", size)
    root = resolve_root(root)
    directory = root / FOLDER
    missing = _missing(directory)
    if missing and download:
        _download(root)
        missing = _missing(directory)
    if missing:
        raise DataError(
            f"STL-10 not found: {directory} lacks {', '.join(missing)}",
            f"extract {ARCHIVE_URL} into {root} (so that {directory / missing[0]} exists), "
            f"pass root=<dir> or set $KDLANG_DATA to where it is, or pass download=true",
        )
    stamps = tuple((directory / name).stat().st_mtime_ns for pair in SPLIT_FILES.values() for name in pair)
    return _decode(directory, size, stamps)
