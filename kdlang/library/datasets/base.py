"""Plain records shared by the data set modules and the registry.

`RawData` is what a data set module returns: decoded uint8 tensors, nothing
split or augmented yet. `DatasetInfo` describes a data set without loading it
(the checker needs shapes and class counts before any file is read).
`DataBundle` is what `build` hands to the compiler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a data set.

    `kwargs` maps every keyword `build` accepts for this data set (the common
    ones and the data-set-specific ones) to its default.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kwargs: Mapping[str, Any]
    description: str


@dataclass(frozen=True)
class RawData:
    """Decoded splits: uint8 ``[N, C, H, W]`` images and int64 ``[N]`` labels.

    `mean`/`std`: the normalisation of a data set whose statistics are known only once it is loaded
    (`images` measures them on its training images); None: the `DatasetInfo`'s.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None


@dataclass(frozen=True)
class DataBundle:
    """The splits of one built data set plus what a model needs to know.

    `val` is None when no validation images were carved off. `mean`/`std` are
    the normalisation actually applied (None when normalisation is off).
    """

    train: Dataset
    val: Optional[Dataset]
    test: Dataset
    input_shape: tuple[int, int, int]
    num_classes: int
    num_train: int
    name: str = ""
    class_names: tuple[str, ...] = ()
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    source: str = field(default="", compare=False)


def default_root() -> Path:
    """``$KDLANG_DATA`` if set, else ``~/data``; read at call time."""
    return Path(os.environ.get("KDLANG_DATA") or "~/data").expanduser()


def resolve_root(root: Any) -> Path:
    return default_root() if root is None else Path(root).expanduser()
