"""Fashion-MNIST: 70k 28x28 grey images of clothing in 10 classes.

Source order:

1. the Debian package ``dataset-fashion-mnist`` (``DEBIAN_DIR``), read with
   our own IDX reader: no network, no copies, ~0.3 s for all 70k images;
2. torchvision's layout under ``root`` (``root/FashionMNIST/raw``, or the IDX
   files directly in ``root``), plain or gzipped;
3. with ``download=True`` only: torchvision downloads into
   ``root/FashionMNIST/raw`` and we read what it wrote.

Otherwise a `DataError` says how to get the files. Nothing is ever written
outside ``root``. Decoded tensors are memoised in-process (keyed by path and
mtime) because recipes and tests build the same data set many times.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from .base import DatasetInfo, RawData, resolve_root
from .errors import DataError
from .idx import read_idx

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

INFO = DatasetInfo(
    name="fashion_mnist",
    input_shape=(1, 28, 28),
    num_classes=10,
    mean=(0.2860,),
    std=(0.3530,),
    kwargs={},
    description="Fashion-MNIST: 60k/10k 28x28 grayscale clothing images, 10 classes",
)

INSTALL_HINT = "apt-get install -y dataset-fashion-mnist"


def _find_files(directory: Path) -> dict[str, Path] | None:
    """All four files in `directory` (gzipped preferred), or None."""
    found = {}
    for key, stem in STEMS.items():
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _candidates(root: Path) -> list[Path]:
    return [DEBIAN_DIR, root / "FashionMNIST" / "raw", root]


@functools.lru_cache(maxsize=4)
def _decode(paths: tuple[Path, ...], stamps: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Decode the four files; `stamps` (mtimes) only key the cache."""
    return tuple(read_idx(path) for path in paths)


def read_files(files: dict[str, Path]) -> RawData:
    """Decode an explicit set of the four IDX files into `RawData`."""
    keys = tuple(STEMS)
    paths = tuple(files[k] for k in keys)
    stamps = tuple(p.stat().st_mtime_ns for p in paths)
    decoded = dict(zip(keys, _decode(paths, stamps)))
    for split in ("train", "test"):
        images, labels = decoded[f"{split}_images"], decoded[f"{split}_labels"]
        if images.dim() != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise DataError(
                f"Fashion-MNIST {split} files in {paths[0].parent} have unexpected shapes "
                f"{tuple(images.shape)} / {tuple(labels.shape)}",
                f"reinstall the data ({INSTALL_HINT}) or re-download it",
            )
    return RawData(
        train_images=decoded["train_images"].unsqueeze(1),
        train_labels=decoded["train_labels"].to(torch.int64),
        test_images=decoded["test_images"].unsqueeze(1),
        test_labels=decoded["test_labels"].to(torch.int64),
        class_names=CLASS_NAMES,
        source=str(paths[0].parent),
    )


def _download(root: Path) -> None:
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"downloading Fashion-MNIST into {root} failed: {exc}",
            f"install the Debian package instead: {INSTALL_HINT}",
        ) from None


def load(root=None, download: bool = False) -> RawData:
    """Decoded Fashion-MNIST from the first source that has all four files."""
    root = resolve_root(root)
    for directory in _candidates(root):
        files = _find_files(directory)
        if files is not None:
            return read_files(files)
    if download:
        _download(root)
        files = _find_files(root / "FashionMNIST" / "raw")
        if files is not None:
            return read_files(files)
    searched = ", ".join(str(d) for d in _candidates(root))
    raise DataError(
        f"Fashion-MNIST not found (looked in {searched})",
        f"run `{INSTALL_HINT}`, or pass download=true to fetch it into {root}",
    )
