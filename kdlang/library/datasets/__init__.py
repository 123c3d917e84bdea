"""Data sets for kdlang recipes: registry, `build`, `loader`.

    from kdlang.library import datasets
    bundle = datasets.build("fashion_mnist", augment=[("crop", (28,), {"pad": 2}), ("flip", (), {})], val=5000)
    train = datasets.loader(bundle.train, batch_size=128, shuffle=True, seed=0)
    for images, labels, indices in train: ...

Design in one paragraph: every split is held in memory as uint8 tensors and
augmented per batch with torch ops (`transforms`); randomness is a pure
function of (seed, epoch, sample index) (`rng`), so resumed runs, different
worker counts and per-item vs. per-batch fetching all see the same pixels.
Everything a recipe can get wrong (names, keyword arguments, augmentation
specs, shapes) is checked before any file is read, and every missing-data
problem is a `DataError` whose hint says how to fix it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from kdlang.library.signatures import DATA_LOADER_KWARGS, DEFAULT_BATCH  # the loaders' defaults

from kdlang.library import extensions

from . import cifar, fashion_mnist, images, stl10, synthetic as _synthetic, tiny_imagenet
from .base import DataBundle, DatasetInfo, RawData, default_root
from .errors import DataError
from .loading import Batch, EpochLoader, collate, loader
from .splits import SplitDataset, carve_validation
from .transforms import AUGMENTATIONS, Normalize, build_pipeline, check_augment, explicit_normalization

__all__ = [
    "AUGMENTATIONS",
    "COMMON_KWARGS",
    "DATA_LOADER_KWARGS",
    "DEFAULT_BATCH",
    "Batch",
    "DataBundle",
    "DataError",
    "DatasetInfo",
    "EpochLoader",
    "SplitDataset",
    "build",
    "check_augment",
    "collate",
    "default_root",
    "info",
    "loader",
    "names",
    "synthetic",
]

COMMON_KWARGS: dict[str, Any] = {
    "augment": (),
    "val": 0,
    "seed": 0,
    "root": None,
    "download": False,
    "normalize": True,
    "test_augment": (),
}
"""Keywords every data set accepts, with defaults (see `build`)."""


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    load: Callable[..., RawData]
    # Facts that depend on data-set-specific keywords: (info, merged keywords) -> info.
    # Must validate those keywords (ValueError) without reading any file.
    specialize: Callable[[DatasetInfo, dict[str, Any]], DatasetInfo] | None = None
    # Common keywords `specialize` also sees (its own keywords, which `build` receives as common
    # ones): `images` lists its folder from `root` and checks `val` against the images it finds.
    sees: tuple[str, ...] = ()


def _load_synthetic(root, download, *, seed, shape, classes, size, test_size, data_seed) -> RawData:
    return _synthetic.load(shape, classes, size, test_size, seed if data_seed is None else data_seed)


def _synthetic_info(base: DatasetInfo, specific: dict[str, Any]) -> DatasetInfo:
    shape, classes, _, _ = _synthetic.check_args(
        specific["shape"], specific["classes"], specific["size"], specific["test_size"]
    )
    return replace(base, input_shape=shape, num_classes=classes)


def _load_images(folder, download, *, seed, root, **specific) -> RawData:
    # `folder` is the common `root` given to `build`; `root` is the default of images' own keyword.
    return images.load(folder, **specific)


def _resized_info(module) -> Callable[[DatasetInfo, dict[str, Any]], DatasetInfo]:
    """The info of a data set whose ``size`` keyword sets the image side at load time."""
    return lambda base, specific: replace(base, input_shape=module.input_shape(specific["size"]))


_REGISTRY: dict[str, _Entry] = {
    "cifar10": _Entry(cifar.INFO10, lambda root, download, *, seed: cifar.load_cifar10(root, download)),
    "cifar100": _Entry(cifar.INFO100, lambda root, download, *, seed: cifar.load_cifar100(root, download)),
    "fashion_mnist": _Entry(fashion_mnist.INFO, lambda root, download, *, seed: fashion_mnist.load(root, download)),
    "stl10": _Entry(stl10.INFO, lambda root, download, *, seed, size: stl10.load(root, download, size),
                    _resized_info(stl10)),
    "synthetic": _Entry(_synthetic.INFO, _load_synthetic, _synthetic_info),
    "tiny_imagenet": _Entry(tiny_imagenet.INFO,
                            lambda root, download, *, seed, size: tiny_imagenet.load(root, download, size),
                            _resized_info(tiny_imagenet)),
    "images": _Entry(images.INFO, _load_images, images.specialize, sees=("root", "val")),
}


# Training images per data set, known without reading a file (synthetic: its `size=`), so the checker
# can tell that `val=` leaves something to train on.
TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "fashion_mnist": 60_000, "stl10": 5_000,
               "tiny_imagenet": 100_000}


def train_size(name: str, size: int | None = None) -> int:
    """The number of training images of `name`; `size` is synthetic's keyword of that name."""
    if name == "synthetic":
        return size if size is not None else _synthetic.INFO.kwargs["size"]
    if name == "images":
        return sys.maxsize  # known once the folder is listed: `info` checks `val=` then
    plugin = extensions.DATASETS.get(name)
    if plugin is not None:
        return plugin.train_size if plugin.train_size is not None else sys.maxsize  # unknown: not limiting
    return TRAIN_SIZES[name]


def names() -> list[str]:
    """Registered data set names, sorted; plugins' (`acme.blobs`) included."""
    return sorted([*_REGISTRY, *extensions.DATASETS])


def _entry(name: str) -> _Entry:
    plugin = extensions.DATASETS.get(name)
    if plugin is not None:
        return _plugin_entry(plugin)
    if name not in _REGISTRY:
        raise ValueError(f"unknown data set {name!r}; accepted: {', '.join(names())}")
    return _REGISTRY[name]


def _plugin_entry(plugin: extensions.DatasetEntry) -> _Entry:
    """A plugin's data set as a registry entry: its loader is called like a built-in's."""
    facts = DatasetInfo(plugin.name, plugin.input_shape, plugin.classes, plugin.mean, plugin.std,
                        dict(plugin.kwargs), plugin.doc or f"a data set of plugin {plugin.provider}")
    return _Entry(facts, plugin.load)


def _specific(entry: _Entry, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Data-set-specific keywords merged over their defaults; unknown ones raise."""
    unknown = sorted(set(kwargs) - set(entry.info.kwargs))
    if unknown:
        accepted = ", ".join(list(COMMON_KWARGS) + list(entry.info.kwargs))
        raise TypeError(
            f"data set {entry.info.name!r} got unexpected keyword argument(s) "
            f"{', '.join(unknown)}; accepted: {accepted}"
        )
    return {**entry.info.kwargs, **kwargs}


def info(name: str, **kwargs: Any) -> DatasetInfo:
    """Static facts about `name` without loading data.

    Data-set-specific keywords (e.g. ``shape``/``classes`` for synthetic,
    ``size`` for stl10 and tiny_imagenet, ``root`` for images) are taken into
    account; `kwargs` of the result lists every keyword `build` accepts for
    this data set, common ones included, with defaults. `kwargs` may hold any
    keyword `build` takes: common ones bear on no fact and are ignored, except
    those the data set's entry sees (images: ``root`` and ``val``).
    """
    entry = _entry(name)
    seen = {k: kwargs[k] for k in entry.sees if k in kwargs}
    specific = _specific(entry, {k: v for k, v in kwargs.items() if k not in COMMON_KWARGS})
    specific.update(seen)
    base = entry.info if entry.specialize is None else entry.specialize(entry.info, specific)
    return replace(base, kwargs={**COMMON_KWARGS, **entry.info.kwargs})


def _as_specs(specs: Any) -> list[Any]:
    """A lone spec (``"flip"`` or ``("flip", (), {})``) counts as a list of one."""
    if isinstance(specs, str) or (isinstance(specs, tuple) and specs and isinstance(specs[0], str)):
        return [specs]
    return list(specs)


def _check_labels(raw: RawData, num_classes: int, name: str) -> None:
    for split, labels in (("train", raw.train_labels), ("test", raw.test_labels)):
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(
                f"{name} {split} labels span [{int(labels.min())}, {int(labels.max())}] "
                f"but the data set has {num_classes} classes ({raw.source})",
                "the files are corrupt or of another data set; re-download them",
            )


def build(
    name: str,
    *,
    augment: Sequence[Any] = (),
    val: int = 0,
    seed: int = 0,
    root: Any = None,
    download: bool = False,
    normalize: bool = True,
    test_augment: Sequence[Any] = (),
    **kwargs: Any,
) -> DataBundle:
    """Load `name` and wrap its splits for training.

    * `augment`: ``(name, args, kwargs)`` specs for the TRAIN split, in order
      (see `AUGMENTATIONS`). Normalisation with the data set's mean/std is
      appended last unless ``normalize=False``; an explicit ``normalize``
      spec replaces it, and that normalisation is used for val/test too.
    * `val`: this many training images become a stratified validation split,
      chosen by `seed`; it gets no augmentation.
    * `seed`: validation carve-out and augmentation randomness (and, for
      synthetic, the generated data unless ``data_seed`` is given).
    * `test_augment`: specs for the TEST split only (e.g. ``noise`` for
      robustness evaluation); fixed per sample across evaluation passes.
    * `root` / `download`: where on-disk data sets live (default
      ``$KDLANG_DATA`` or ``~/data``) and whether a missing one may be
      fetched. Missing data raises `DataError`.
    """
    entry = _entry(name)
    specific = _specific(entry, kwargs)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be true or false, got {normalize!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if isinstance(val, bool) or not isinstance(val, int) or val < 0:
        raise ValueError(f"val must be a non-negative int number of training images, got {val!r}")
    augment, test_augment = _as_specs(augment), _as_specs(test_augment)
    facts = info(name, **kwargs, **{k: v for k, v in (("root", root), ("val", val)) if k in entry.sees})
    # Fail on bad specs before touching any file.
    check_augment(augment, facts.input_shape)
    check_augment(test_augment, facts.input_shape)

    raw = entry.load(root, download, seed=seed, **specific)
    _check_labels(raw, facts.num_classes, name)
    train_pos, val_pos = carve_validation(raw.train_labels, val, seed)

    explicit = explicit_normalization(augment)
    default = Normalize(raw.mean or facts.mean, raw.std or facts.std) if normalize else None
    eval_norm = explicit or default
    shape = facts.input_shape
    train_pipe = build_pipeline(augment, shape, default)
    eval_pipe = build_pipeline((), shape, eval_norm)
    test_pipe = build_pipeline(test_augment, shape, eval_norm)

    def split(images, labels, pipeline, label, follows_epoch, origin=None):
        return SplitDataset(
            images, labels, pipeline, seed=seed, name=f"{name}/{label}",
            follows_epoch=follows_epoch, origin=origin,
        )

    if val:
        def take(tensor, positions):
            # index_select copies whole rows; advanced indexing is ~4x slower here.
            return tensor.index_select(0, positions)

        train = split(take(raw.train_images, train_pos), take(raw.train_labels, train_pos),
                      train_pipe, "train", True, train_pos)
        val_set = split(take(raw.train_images, val_pos), take(raw.train_labels, val_pos),
                        eval_pipe, "val", False, val_pos)
    else:
        train = split(raw.train_images, raw.train_labels, train_pipe, "train", True)
        val_set = None
    test = split(raw.test_images, raw.test_labels, test_pipe, "test", False)
    return DataBundle(
        train=train,
        val=val_set,
        test=test,
        input_shape=shape,
        num_classes=facts.num_classes,
        num_train=len(train),
        name=name,
        class_names=raw.class_names,
        mean=eval_norm.mean if eval_norm else None,
        std=eval_norm.std if eval_norm else None,
        source=raw.source,
    )


# Note: this function deliberately replaces the `synthetic` submodule as a package
# attribute; the generator itself is reachable as `_synthetic` (or via sys.modules).
def synthetic(shape=(3, 32, 32), classes: int = 10, size: int = 256, seed: int = 0, **kwargs: Any) -> DataBundle:
    """Shorthand for ``build("synthetic", shape=..., classes=..., size=..., seed=...)``."""
    return build("synthetic", shape=shape, classes=classes, size=size, seed=seed, **kwargs)
