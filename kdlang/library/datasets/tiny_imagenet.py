"""Tiny ImageNet 200: 100k/10k 64x64 colour images in 200 classes, from the standard folder layout.

Expected layout under ``root`` (what ``tiny-imagenet-200.zip`` unpacks to):

* ``tiny-imagenet-200/wnids.txt``: the 200 WordNet ids, one a line;
* ``tiny-imagenet-200/train/<wnid>/images/*.JPEG``: 500 training images per class;
* ``tiny-imagenet-200/val/images/*.JPEG`` and ``val/val_annotations.txt``
  (tab-separated: file name, wnid, bounding box): the 10k labelled
  validation images, used as the TEST split (the official test images have no
  labels). ``words.txt``, if present, gives readable class names.

Labels follow the sorted wnids, the order torchvision's ``ImageFolder`` gives
``train/``. JPEGs are decoded with ``torchvision.io`` as RGB (the few
greyscale ones get three equal channels) and resized once to `size` (default
32, as in the CIFAR-to-Tiny-ImageNet linear-probe transfer experiments) with
antialiased bilinear interpolation (see `resize`); ``size=64`` keeps the
native resolution.

Decoding 110k JPEGs takes a while, so the decoded uint8 tensors are cached in
``tiny-imagenet-200/kdlang-cache-<size>.pt`` and reused when present and
consistent with ``wnids.txt``; the cache is written atomically, and a
read-only folder only costs a warning and a fresh decode next time. Delete the
file to force a re-decode. There is no downloader: a missing data set raises
a `DataError` saying where to get it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from kdlang import checkpoint_io

from .base import DatasetInfo, RawData, resolve_root
from .errors import DataError
from .resize import check_size, resize_uint8

FOLDER = "tiny-imagenet-200"
ARCHIVE_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
NATIVE = 64
CACHE_FORMAT = 1
JPEG_SUFFIXES = (".jpeg", ".jpg")

INFO = DatasetInfo(
    name="tiny_imagenet",
    input_shape=(3, 32, 32),  # follows `size`; see `info`
    num_classes=200,
    mean=(0.485, 0.456, 0.406),  # ImageNet's, as the transfer experiments normalise Tiny ImageNet
    std=(0.229, 0.224, 0.225),
    kwargs={"size": 32},
    description="Tiny ImageNet: 100k/10k 64x64 colour images (val as test), 200 classes, "
                "resized to size x size (default 32)",
)


def input_shape(size) -> tuple[int, int, int]:
    return (3, check_size("tiny_imagenet", size), check_size("tiny_imagenet", size))


def cache_path(directory: Path, size: int) -> Path:
    return directory / f"kdlang-cache-{size}.pt"


def _missing(directory: Path) -> list[str]:
    wanted = {"wnids.txt": Path.is_file, "train": Path.is_dir, "val/images": Path.is_dir,
              "val/val_annotations.txt": Path.is_file}
    return [name for name, exists in wanted.items() if not exists(directory / name)]


def _read_wnids(directory: Path) -> list[str]:
    try:
        text = (directory / "wnids.txt").read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {directory / 'wnids.txt'}: {exc}", f"re-extract {ARCHIVE_URL}") from None
    wnids = sorted({line.strip() for line in text.splitlines() if line.strip()})
    if not wnids or len(wnids) > INFO.num_classes:
        raise DataError(
            f"{directory / 'wnids.txt'} lists {len(wnids)} class ids, expected 1..{INFO.num_classes}",
            f"the folder is damaged or of another data set; re-extract {ARCHIVE_URL}",
        )
    return wnids


def _class_names(directory: Path, wnids: list[str]) -> tuple[str, ...]:
    """First synonym of each wnid from ``words.txt`` when present, else the wnid itself."""
    words: dict[str, str] = {}
    try:
        for line in (directory / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid.strip()] = text.split(",")[0].strip()
    except (OSError, UnicodeDecodeError):
        pass
    return tuple(words.get(w) or w for w in wnids)


def _jpegs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in JPEG_SUFFIXES)
    except OSError:
        return []


def _decode(paths: list[Path], size: int) -> torch.Tensor:
    """uint8 ``[len(paths), 3, size, size]``: RGB decode, then one resize per run of equal shapes."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    pending: list[torch.Tensor] = []
    start = 0

    def flush() -> None:
        nonlocal start
        if pending:
            out[start:start + len(pending)] = resize_uint8(torch.stack(pending), size)
            start += len(pending)
            pending.clear()

    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its codecs in favour of TorchCodec, once per call.
        warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
        for path in paths:
            try:
                image = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
            except (RuntimeError, OSError, ValueError) as exc:
                raise DataError(f"cannot decode Tiny ImageNet image {path}: {exc}",
                                f"the file is damaged; re-extract {ARCHIVE_URL}") from None
            if pending and image.shape != pending[0].shape:
                flush()
            pending.append(image)
    flush()
    return out


def _read_train(directory: Path, wnids: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for label, wnid in enumerate(wnids):
        paths = _jpegs(directory / "train" / wnid / "images")
        if not paths:
            raise DataError(
                f"Tiny ImageNet class {wnid} has no images in {directory / 'train' / wnid / 'images'}",
                f"the folder is incomplete; re-extract {ARCHIVE_URL}",
            )
        images.append(_decode(paths, size))
        labels.append(torch.full((len(paths),), label, dtype=torch.int64))
    return torch.cat(images), torch.cat(labels)


def _read_val(directory: Path, wnids: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    annotations = directory / "val" / "val_annotations.txt"
    index = {wnid: i for i, wnid in enumerate(wnids)}
    paths, labels = [], []
    try:
        lines = annotations.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {annotations}: {exc}", f"re-extract {ARCHIVE_URL}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1].strip() not in index:
            raise DataError(
                f"{annotations}:{number}: expected `FILE<tab>WNID...` with a wnid of wnids.txt, got {line!r}",
                f"the file is damaged; re-extract {ARCHIVE_URL}",
            )
        paths.append(directory / "val" / "images" / fields[0].strip())
        labels.append(index[fields[1].strip()])
    return _decode(paths, size), torch.tensor(labels, dtype=torch.int64)


_CACHE_TENSORS = ("train_images", "train_labels", "test_images", "test_labels")


def _load_cache(path: Path, size: int, wnids: list[str] | None) -> RawData | None:
    """The cached splits if `path` holds a consistent cache for `size` (and `wnids`), else None."""
    if not path.is_file():
        return None
    try:
        payload: Any = checkpoint_io.read(path)
    except checkpoint_io.CheckpointError as exc:
        warnings.warn(f"ignoring the unreadable Tiny ImageNet cache {path} (it {exc.reason}); decoding the JPEGs again",
                      stacklevel=4)
        return None
    ok = (
        isinstance(payload, dict)
        and payload.get("format") == CACHE_FORMAT
        and payload.get("size") == size
        and all(isinstance(payload.get(k), torch.Tensor) for k in _CACHE_TENSORS)
        and isinstance(payload.get("wnids"), list)
        and (wnids is None or payload["wnids"] == wnids)
    )
    if ok:
        for split in ("train", "test"):
            images, labels = payload[f"{split}_images"], payload[f"{split}_labels"]
            ok = ok and (images.dtype == torch.uint8 and images.dim() == 4
                         and tuple(images.shape[1:]) == (3, size, size)
                         and labels.dtype == torch.int64 and labels.shape == images.shape[:1])
    if not ok:
        warnings.warn(f"ignoring stale or foreign Tiny ImageNet cache {path}; decoding the JPEGs again",
                      stacklevel=4)
        return None
    names = payload.get("class_names")
    names = tuple(names) if isinstance(names, list) else tuple(payload["wnids"])
    return RawData(*(payload[k] for k in _CACHE_TENSORS), names, str(path.parent))


def _write_cache(path: Path, size: int, wnids: list[str], raw: RawData) -> None:
    payload = {"format": CACHE_FORMAT, "size": size, "wnids": wnids, "class_names": list(raw.class_names),
               "train_images": raw.train_images, "train_labels": raw.train_labels,
               "test_images": raw.test_images, "test_labels": raw.test_labels}
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as out:
            torch.save(payload, out)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the data folder is usually shared
        os.replace(temporary, path)  # atomic: concurrent loaders never see half a file
    except OSError as exc:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass
        warnings.warn(f"cannot write the Tiny ImageNet cache {path} ({exc}); the JPEGs will be decoded "
                      f"again next time", stacklevel=4)


def load(root=None, download: bool = False, size: int = 32) -> RawData:
    """Decoded Tiny ImageNet train and val (as test) splits from ``root/tiny-imagenet-200``, at `size`."""
    size = check_size("tiny_imagenet", size)
    root = resolve_root(root)
    directory = root / FOLDER
    cache = cache_path(directory, size)
    missing = _missing(directory)
    wnids = None if "wnids.txt" in missing else _read_wnids(directory)
    cached = _load_cache(cache, size, wnids)
    if cached is not None:
        return cached
    if missing:
        why = " (kdlang has no downloader for it, so download=true does not help)" if download else ""
        raise DataError(
            f"Tiny ImageNet not found: {directory} lacks {', '.join(missing)}{why}",
            f"download {ARCHIVE_URL} and unzip it into {root} (so that {directory / missing[0]} exists), "
            f"or pass root=<dir> or set $KDLANG_DATA to where it is",
        )
    train_images, train_labels = _read_train(directory, wnids, size)
    test_images, test_labels = _read_val(directory, wnids, size)
    raw = RawData(train_images, train_labels, test_images, test_labels,
                  _class_names(directory, wnids), str(directory))
    _write_cache(cache, size, wnids, raw)
    return raw
