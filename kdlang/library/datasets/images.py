"""Your own images: a folder with one sub-folder per class, the layout torchvision's ImageFolder reads.

    data images(root="my_images", size=[64, 64], val=500)

Layout under ``root`` (a relative root is looked up beside the recipe first, then in the working directory):

* ``train/<class>/...``: the training images of each class. Class names are the folder names;
  sorted, they give the label indices (0, 1, ...), as ImageFolder numbers them. Files ending in
  ``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.webp`` or ``.gif`` (any case) count, in sub-folders
  too; other files and hidden entries (``.DS_Store``, ``.ipynb_checkpoints``) are skipped.
* ``test/<class>/...`` (or ``val/<class>/...`` when there is no ``test/``): the test split, with
  class folders named as in ``train/`` (a class may be absent). Without either folder, ``test=``
  images (a count, or a fraction of ``train/``; default `DEFAULT_TEST`) are carved from the
  training images, stratified by class and chosen by ``data_seed`` (default 0, independent of the
  run's seed, so that every run is scored on the same test images), as ``val=`` is carved.

Every image is decoded with PIL, turned upright by its EXIF orientation, converted to RGB
(``channels=3``; grey images get three equal channels, transparency is dropped) or to grey
(``channels=1``, ITU-R 601 luma), and resized ONCE, at load time, to ``size`` (an int for square
images, or ``[H, W]``; default `DEFAULT_SIZE`): scaled, keeping its aspect ratio, until it covers
H x W, then cropped to H x W about its centre (``ImageOps.fit``, PIL's antialiased bilinear filter,
the filter `resize` uses for STL-10 and Tiny ImageNet). Nothing is stretched; a border of an image
whose aspect ratio differs from H:W is cut off. The uint8 tensors are held in memory like every
other data set's, so augmentations, loaders and the teacher cache work unchanged. Decoded images are
memoised in-process, keyed by the files' paths, sizes and modification times.

``mean``/``std`` (a value per channel, or one for all) normalise the images; when not given they
are measured once on the training images (after the test carve-out, before ``val=``'s) when the
data set is loaded, and kept with the decoded images.

At check time (`specialize`) the class count and input shape come from the folder listing alone:
no image is opened. A missing root, a root without ``train/``, no class folders or a class folder
without images raise ``ValueError`` naming what is missing and how to fix it; the checker shows it
at the data declaration. So does a folder whose decoded images would take more memory than
`memory_budget` (``$KDLANG_IMAGES_MEMORY_GB``, default 8 GiB).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from kdlang.library.spec import Signature

from .base import DatasetInfo, RawData
from .errors import DataError
from .splits import carve_validation

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
TEST_FOLDERS = ("test", "val")  # the first one present is the test split
DEFAULT_SIZE = 32
DEFAULT_TEST = 0.2  # of the training images, when there is no test folder
MIN_CLASSES = 2
MEMORY_ENV = "KDLANG_IMAGES_MEMORY_GB"
DEFAULT_MEMORY_GB = 8.0
MEMO_ENTRIES = 2  # decoded folders kept in-process (the latest ones)
_GIB = float(1 << 30)

REQUIRED = Signature.REQUIRED

INFO = DatasetInfo(
    name="images",
    input_shape=(3, DEFAULT_SIZE, DEFAULT_SIZE),  # follows `size` and `channels`; see `specialize`
    num_classes=0,  # one per class folder: known once `root` is listed
    mean=(0.5,),  # placeholders: measured on the training images unless `mean=`/`std=` are given
    std=(0.25,),
    kwargs={"root": REQUIRED, "size": DEFAULT_SIZE, "channels": 3, "mean": None, "std": None,
            "test": None, "data_seed": 0},
    description="your own images: `root=` (required) holds train/CLASS/ (and test/CLASS/) image files, "
                "a class per folder (classes: their number); resized to `size` (default 32); `test=` "
                "carves a test split when there is no test/ folder (default 0.2)",
)


class FolderError(DataError, ValueError):
    """What is wrong with the folder (`message`) and what to do about it (`hint`).

    A ValueError, which the checker shows at the data declaration (``message; hint``), and a
    `DataError`, which the runtime shows there too when the folder changed after the check.
    """

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}"


# ---- keywords --------------------------------------------------------------------------------------


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_size(size: Any) -> tuple[int, int]:
    """`size` as ``(H, W)``: an int means a square image."""
    pair = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    if len(pair) != 2 or not all(_int(v) and v > 0 for v in pair):
        raise ValueError(f"images size must be a positive int or a list [H, W] of two, got {size!r}")
    return (pair[0], pair[1])


def check_channels(channels: Any) -> int:
    if not _int(channels) or channels not in (1, 3):
        raise ValueError(f"images channels must be 3 (colour) or 1 (grey), got {channels!r}")
    return channels


def _check_stats(what: str, values: Any, channels: int) -> tuple[float, ...] | None:
    if values is None:
        return None
    items = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    ok = len(items) in (1, channels) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items)
    if ok and what == "std":
        ok = all(v > 0 for v in items)
    if not ok:
        each = "a positive number" if what == "std" else "a number"
        raise ValueError(f"images {what} must be a list of 1 or {channels} values (one per channel), each "
                         f"{each}, got {values!r}")
    return tuple(float(v) for v in items)


def _check_test(test: Any) -> None:
    if test is None or (_int(test) and test >= 1):
        return
    if isinstance(test, float) and 0 < test < 1:
        return
    raise ValueError(f"images test must be a number of training images (>= 1) or a fraction of them in "
                     f"(0, 1), got {test!r}")


def test_count(test: Any, train: int) -> int:
    """How many of `train` images a `test=` value carves off (none: `DEFAULT_TEST` of them)."""
    test = DEFAULT_TEST if test is None else test
    if isinstance(test, float):
        return min(max(round(train * test), 1), train - 1)
    return test


def memory_budget() -> float:
    """Bytes the decoded images may take: ``$KDLANG_IMAGES_MEMORY_GB`` GiB, default 8."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    try:
        gigabytes = float(text) if text else DEFAULT_MEMORY_GB
    except ValueError:
        gigabytes = DEFAULT_MEMORY_GB
    return (gigabytes if gigabytes > 0 and math.isfinite(gigabytes) else DEFAULT_MEMORY_GB) * _GIB


# ---- the folder listing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """The image files of a folder, per class (in label order); nothing decoded."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[Path, ...], ...]
    test: tuple[tuple[Path, ...], ...] | None  # None: no test folder, carve one from train
    test_folder: str | None

    @property
    def train_count(self) -> int:
        return sum(map(len, self.train))

    @property
    def test_count(self) -> int:
        return sum(map(len, self.test)) if self.test is not None else 0


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir()),
                  key=lambda p: p.name)


def _images_under(folder: Path) -> list[Path]:
    """Image files in `folder` and its sub-folders (hidden ones skipped), in a fixed order."""
    found: list[Path] = []
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(top) / f for f in sorted(files)
                     if not f.startswith(".") and f.lower().endswith(SUFFIXES))
    return found


def _suffixes() -> str:
    return ", ".join(SUFFIXES)


def list_folder(root: Any) -> Listing:
    """The classes and image files under `root`; `FolderError` says what is missing and the fix."""
    if root is None or root is REQUIRED:
        raise FolderError("no folder given",
                          'pass root="FOLDER", the folder holding train/<class>/ images')
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"images root must be a folder path (a string), got {root!r}")
    path = Path(root).expanduser()
    try:
        return _list(path)
    except OSError as exc:
        raise FolderError(f"cannot read {path}: {exc.strerror or exc}",
                          "make the folder and its files readable") from None


def _list(path: Path) -> Listing:
    where = f" (relative to the working directory {os.getcwd()})" if not path.is_absolute() else ""
    example = f"{path / 'train' / 'cat' / '001.png'}"
    if not path.exists():
        raise FolderError(f"folder {path} not found{where}",
                          f"make it, with one folder of images per class under {path / 'train'} "
                          f"(e.g. {example}), or point root= at the folder that has them")
    if not path.is_dir():
        raise FolderError(f"{path} is a file, not a folder",
                          f"point root= at the folder that holds train/<class>/ images (e.g. {example})")
    train = path / "train"
    if not train.is_dir():
        inside = _subfolders(path)
        if path.name in ("train", *TEST_FOLDERS) and (path.parent / "train").is_dir():
            fix = f"point root= at the folder above it, {path.parent}"
        elif inside and any(_images_under(p) for p in inside[:8]):
            fix = (f"the class folders seem to be directly in {path}: move them into "
                   f"{train} (and the test images into {path / 'test'})")
        else:
            fix = f"put the training images in {train}, one folder per class (e.g. {example})"
        raise FolderError(f"{path} has no train/ folder", fix)
    folders = _subfolders(train)
    if not folders:
        loose = any(p.is_file() and p.name.lower().endswith(SUFFIXES) for p in train.iterdir())
        what = "images but no class folders" if loose else "no class folders"
        raise FolderError(f"{train} has {what}",
                          f"make one folder per class in it, holding that class's images "
                          f"(e.g. {train / 'cat'} and {train / 'dog'})")
    if len(folders) < MIN_CLASSES:
        raise FolderError(f"{train} has only one class folder ({folders[0].name})",
                          "a classifier needs at least two classes: add a folder of images per class")
    from kdlang.library.signatures import MAX_CLASSES

    if len(folders) > MAX_CLASSES:
        raise FolderError(f"{train} has {len(folders)} class folders, more than the {MAX_CLASSES} "
                          "kdlang allows", "merge classes, or point root= at the right folder")
    classes = tuple(p.name for p in folders)
    files = tuple(tuple(_images_under(p)) for p in folders)
    empty = [name for name, found in zip(classes, files) if not found]
    if empty:
        shown = ", ".join(str(train / name) for name in empty[:5]) + (" ..." if len(empty) > 5 else "")
        noun = "class folder" if len(empty) == 1 else f"{len(empty)} class folders"
        raise FolderError(f"{noun} without images: {shown}",
                          f"add images ({_suffixes()}) to {'it' if len(empty) == 1 else 'them'}, "
                          f"or remove {'it' if len(empty) == 1 else 'them'}")
    test_folder = next((name for name in TEST_FOLDERS if (path / name).is_dir()), None)
    test = None
    if test_folder is not None:
        test = _list_test(path / test_folder, classes)
    return Listing(path, classes, files, test, test_folder)


def _list_test(folder: Path, classes: tuple[str, ...]) -> tuple[tuple[Path, ...], ...]:
    found = {p.name: p for p in _subfolders(folder)}
    foreign = sorted(set(found) - set(classes))
    if foreign:
        known = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
        raise FolderError(f"{folder} has class folders that train/ lacks: {', '.join(foreign[:5])}",
                          f"name the test class folders as in train/ ({known}), or remove those")
    files = tuple(tuple(_images_under(found[name])) if name in found else () for name in classes)
    if not any(files):
        raise FolderError(f"the test folder {folder} has no images in class folders",
                          f"put the test images in {folder / classes[0]}/ and so on, or remove the "
                          f"folder to carve the test split from train/ (test=)")
    return files


# ---- check time ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What loading will produce, from the listing and the keywords alone."""

    listing: Listing
    shape: tuple[int, int, int]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    carve: int  # training images carved off as the test split (0: a test folder is used)

    @property
    def train(self) -> int:
        return self.listing.train_count - self.carve

    @property
    def total(self) -> int:
        return self.listing.train_count + self.listing.test_count

    def bytes(self) -> int:
        return self.total * math.prod(self.shape)


def plan(root: Any, *, size: Any = DEFAULT_SIZE, channels: Any = 3, mean: Any = None, std: Any = None,
         test: Any = None, data_seed: Any = 0, val: Any = 0) -> Plan:
    """Check every keyword and list the folder (no image is opened); ValueError on any problem."""
    height, width = check_size(size)
    channels = check_channels(channels)
    mean, std = _check_stats("mean", mean, channels), _check_stats("std", std, channels)
    _check_test(test)
    if not _int(data_seed) or data_seed < 0:
        raise ValueError(f"images data_seed must be a non-negative int, got {data_seed!r}")
    listing = list_folder(root)
    if listing.test is not None and test is not None:
        raise FolderError(f"test={test!r} carves a test split, but {listing.root / (listing.test_folder or 'test')} "
                          "already holds one", "remove test=, or the test folder")
    count = listing.train_count
    carve = 0
    if listing.test is None:
        carve = test_count(test, count)
        if carve >= count:
            raise FolderError(f"test={test} takes {carve} of the {count} training images, leaving none to train on",
                              f"use test= up to {count - 1}, or a fraction such as 0.2")
    result = Plan(listing, (channels, height, width), mean, std, carve)
    if _int(val) and val >= result.train:
        left = (f"the {result.train} training images left after the test split ({count} in train/, "
                f"{carve} carved for test)" if carve else f"the {result.train} training images")
        raise FolderError(f"val={val} leaves nothing to train on: there are only {left}",
                          f"use val= up to {result.train - 1}, leaving the rest to train on")
    _check_memory(result, height, width)
    return result


def _amount(size: float) -> str:
    """Bytes as a person reads them: 432 KiB, 3.5 GiB."""
    for unit, scale in (("GiB", _GIB), ("MiB", float(1 << 20))):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{math.ceil(size / 1024)} KiB"


def _check_memory(result: Plan, height: int, width: int) -> None:
    need, budget = result.bytes(), memory_budget()
    if need <= budget:
        return
    channels = result.shape[0]
    smaller = [s for s in (128, 64, 32) if s < max(height, width)]
    options = ", ".join(f"size={s} needs {_amount(result.total * channels * s * s)}" for s in smaller)
    allow = f"or allow it with ${MEMORY_ENV}={math.ceil(need / _GIB) + 1}"
    raise FolderError(
        f"the {result.total} images at {channels}x{height}x{width} take {_amount(need)} in memory, more "
        f"than the {budget / _GIB:g} GiB budget",
        f"use a smaller size= ({options}) or fewer images, {allow}" if options else f"use fewer images, {allow}",
    )


def specialize(base: DatasetInfo, specific: dict[str, Any]) -> DatasetInfo:
    """The facts `root` and the keywords give: classes from the folder names, the input shape from
    `size` and `channels`. Without a `root` (the registry asking for the keywords) the defaults."""
    if specific.get("root", REQUIRED) is REQUIRED:
        height, width = check_size(specific.get("size", DEFAULT_SIZE))
        return replace(base, input_shape=(check_channels(specific.get("channels", 3)), height, width))
    keywords = {k: v for k, v in specific.items() if k in base.kwargs or k == "val"}
    result = plan(**keywords)
    channels = result.shape[0]
    return replace(base, input_shape=result.shape, num_classes=len(result.listing.classes),
                   mean=result.mean or (0.5,) * channels, std=result.std or (0.25,) * channels)


# ---- loading ------------------------------------------------------------------------------------------

_MEMO: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
_MEMO_LOCK = threading.Lock()


def _fingerprint(listing: Listing) -> tuple:
    parts = []
    for group in (listing.train, listing.test or ()):
        for files in group:
            for path in files:
                stat = path.stat()
                parts.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(parts)


def _open(path: Path, height: int, width: int, channels: int) -> torch.Tensor:
    """One image as a uint8 ``[C, H, W]`` tensor (see the module docstring for the policy)."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as file:
        orientation = file.getexif().get(0x0112, 1)
        wide, high = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        scale = max(wide / file.width, high / file.height)
        if scale < 0.5:  # JPEG: decode at a reduced scale, still at least twice the target (as thumbnail)
            file.draft(None, (math.ceil(file.width * scale * 2), math.ceil(file.height * scale * 2)))
        image: Image.Image = ImageOps.exif_transpose(file)
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        image = image.convert("RGB" if channels == 3 else "L")
        image = ImageOps.fit(image, (width, height), method=Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


def _decode(files: list[Path], height: int, width: int, channels: int) -> torch.Tensor:
    """uint8 ``[len(files), C, H, W]``, decoded by a few threads (PIL releases the GIL)."""
    out = torch.empty((len(files), channels, height, width), dtype=torch.uint8)

    def one(item: tuple[int, Path]) -> None:
        index, path = item
        try:
            out[index] = _open(path, height, width, channels)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL's UnidentifiedImageError is an OSError
            raise DataError(f"cannot decode image {path}: {exc}",
                            "replace or delete the file (it is damaged or not an image)") from None

    threads = max(1, min(8, os.cpu_count() or 1))
    if threads == 1 or len(files) < 64:
        for item in enumerate(files):
            one(item)
    else:
        with ThreadPoolExecutor(threads, thread_name_prefix="kdlang-images") as pool:
            for _ in pool.map(one, enumerate(files)):
                pass
    return out


def _labelled(groups: tuple[tuple[Path, ...], ...]) -> tuple[list[Path], torch.Tensor]:
    files = [path for group in groups for path in group]
    labels = torch.cat([torch.full((len(group),), label, dtype=torch.int64) for label, group in enumerate(groups)])
    return files, labels


def _decoded(result: Plan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train and test-folder images and labels, memoised on the files and the output shape."""
    listing = result.listing
    try:
        key = (str(listing.root.resolve()), result.shape, listing.test_folder, _fingerprint(listing))
    except OSError as exc:  # a file went away or became unreadable since the listing
        raise DataError(f"cannot read {exc.filename or listing.root}: {exc.strerror or exc}",
                        "make the folder's files readable, and leave them in place while kdlang loads them") from None
    with _MEMO_LOCK:
        if key in _MEMO:
            _MEMO.move_to_end(key)
            return _MEMO[key]
    channels, height, width = result.shape
    train_files, train_labels = _labelled(listing.train)
    train_images = _decode(train_files, height, width, channels)
    if listing.test is not None:
        test_files, test_labels = _labelled(listing.test)
        test_images = _decode(test_files, height, width, channels)
    else:
        test_images, test_labels = torch.empty((0, *result.shape), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    decoded = (train_images, train_labels, test_images, test_labels)
    with _MEMO_LOCK:
        _MEMO[key] = decoded
        while len(_MEMO) > MEMO_ENTRIES:
            _MEMO.popitem(last=False)
    return decoded


def statistics(images: torch.Tensor, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 ``[N, C, H, W]`` images, in [0, 1] units."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        part = images[start:start + chunk].to(torch.float64).div_(255.0)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square_().sum(dim=(0, 2, 3))
    count = max(images.shape[0] * images.shape[2] * images.shape[3], 1)
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)  # a blank channel: no division by 0
    return tuple(mean.tolist()), tuple(std.tolist())


def load(root: Any, *, size: Any = DEFAULT_SIZE, channels: Any = 3, mean: Any = None, std: Any = None,
         test: Any = None, data_seed: Any = 0) -> RawData:
    """Decoded train and test splits of the folder `root`, with their normalisation statistics."""
    result = plan(root, size=size, channels=channels, mean=mean, std=std, test=test, data_seed=data_seed)
    train_images, train_labels, test_images, test_labels = _decoded(result)
    if result.carve:
        keep, carved = carve_validation(train_labels, result.carve, data_seed)
        test_images, test_labels = train_images.index_select(0, carved), train_labels.index_select(0, carved)
        train_images, train_labels = train_images.index_select(0, keep), train_labels.index_select(0, keep)
    measured_mean, measured_std = statistics(train_images) if result.mean is None or result.std is None else (None, None)
    listing = result.listing
    where = f" (test from {listing.test_folder}/)" if listing.test_folder else f" (test: {result.carve} carved from train/)"
    return RawData(train_images, train_labels, test_images, test_labels, listing.classes,
                   f"{listing.root}{where}", mean=result.mean or measured_mean, std=result.std or measured_std)
