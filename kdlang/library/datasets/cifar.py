"""CIFAR-10 and CIFAR-100 from the "python version" pickle batches.

Expected layout under ``root`` (exactly what torchvision downloads):

* CIFAR-10: ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
* CIFAR-100: ``cifar-100-python/{train, test, meta}``

We read the batches with our own small reader instead of torchvision's
classes: one code path for real and hand-made (test) files, no md5 gate that
would reject test fixtures, and no PIL conversion. Each batch is a pickled
dict whose ``data`` is a uint8 ``[N, 3072]`` array (1024 red, then green,
then blue values, row-major), so ``reshape(N, 3, 32, 32)`` is exact.

Pickles can execute code, so the unpickler only resolves the numpy names an
array needs. torchvision is used solely for ``download=True``, after which the
files are read the same way.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import DatasetInfo, RawData, resolve_root
from .errors import DataError


@dataclass(frozen=True)
class CifarLayout:
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    archive_url: str


CIFAR10 = CifarLayout(
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    archive_url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
)

CIFAR100 = CifarLayout(
    title="CIFAR-100",
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    archive_url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
)

_COMMON = dict(input_shape=(3, 32, 32), kwargs={})

INFO10 = DatasetInfo(
    name="cifar10",
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    description="CIFAR-10: 50k/10k 32x32 colour images, 10 classes",
    **_COMMON,
)

INFO100 = DatasetInfo(
    name="cifar100",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    description="CIFAR-100: 50k/10k 32x32 colour images, 100 fine classes",
    **_COMMON,
)

# (module, name) pairs a CIFAR batch may reference; numpy 2 renamed core -> _core.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 3 writes bytes into protocol-2 pickles
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def read_batch(path: Path) -> dict:
    """Unpickle one batch file (Python 2 pickles need latin1 for the bytes)."""
    try:
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, AttributeError) as exc:
        raise DataError(f"cannot read CIFAR batch {path}: {exc}", "re-download the data set") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} does not hold a CIFAR batch dict", "re-download the data set")
    return batch


def _read_split(directory: Path, files: tuple[str, ...], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for file_name in files:
        path = directory / file_name
        batch = read_batch(path)
        if "data" not in batch or label_key not in batch:
            raise DataError(
                f"{path} lacks the 'data' or '{label_key}' entry of a CIFAR batch",
                "re-download the data set",
            )
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(batch[label_key]) != data.shape[0]:
            raise DataError(
                f"{path}: data of shape {data.shape} with {len(batch[label_key])} labels",
                "re-download the data set",
            )
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.as_tensor(list(batch[label_key]), dtype=torch.int64))
    return torch.cat(images), torch.cat(labels)


def _missing(directory: Path, layout: CifarLayout) -> list[str]:
    wanted = layout.train_files + layout.test_files + (layout.meta_file,)
    return [name for name in wanted if not (directory / name).is_file()]


def _download(root: Path, layout: CifarLayout) -> None:
    from torchvision import datasets as tv

    cls = tv.CIFAR10 if layout is CIFAR10 else tv.CIFAR100
    try:
        cls(str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"downloading {layout.title} into {root} failed: {exc}",
            f"fetch {layout.archive_url} by other means and extract it into {root}",
        ) from None


def load(layout: CifarLayout, root=None, download: bool = False) -> RawData:
    """Decoded CIFAR splits from ``root/<layout.folder>``."""
    root = resolve_root(root)
    directory = root / layout.folder
    missing = _missing(directory, layout)
    if missing and download:
        _download(root, layout)
        missing = _missing(directory, layout)
    if missing:
        raise DataError(
            f"{layout.title} not found: {directory} lacks {', '.join(missing)}",
            f"extract {layout.archive_url} into {root} (so that {directory / missing[0]} exists), "
            f"pass root=<dir> or set $KDLANG_DATA to where it is, or pass download=true",
        )
    train_images, train_labels = _read_split(directory, layout.train_files, layout.label_key)
    test_images, test_labels = _read_split(directory, layout.test_files, layout.label_key)
    meta = read_batch(directory / layout.meta_file)
    names = tuple(str(n) for n in meta.get(layout.names_key, ()))
    return RawData(train_images, train_labels, test_images, test_labels, names, str(directory))


def load_cifar10(root=None, download: bool = False) -> RawData:
    return load(CIFAR10, root, download)


def load_cifar100(root=None, download: bool = False) -> RawData:
    return load(CIFAR100, root, download)
