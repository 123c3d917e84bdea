"""In-memory splits and the stratified validation carve-out.

A `SplitDataset` holds one split as uint8 ``[N, C, H, W]`` images plus int64
labels and yields ``(image, label, index)`` where `index` is the sample's
position in this split (CRD's memory bank is keyed by it). `get_batch` and
the DataLoader hook `__getitems__` augment a whole batch in one vectorised
call; a sample comes out identical whichever way it is fetched.

Epochs: augmentation randomness is a pure function of (seed, epoch, index)
(see `rng`). Training splits follow `set_epoch`; evaluation splits ignore it
so that, e.g., test-time noise is identical on every evaluation pass.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from . import rng
from .transforms import Pipeline


class SplitDataset(Dataset):
    """One split of a data set, augmented on the fly with tensor ops."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        pipeline: Pipeline,
        *,
        seed: int = 0,
        name: str = "",
        follows_epoch: bool = True,
        origin: torch.Tensor | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{images.shape[0]} images but labels have shape {tuple(labels.shape)}")
        self.images = images
        self.targets = labels.to(torch.int64)
        self.transform = pipeline
        self.seed = int(seed)
        self.name = name
        self.follows_epoch = follows_epoch
        self.epoch = 0
        # Position of every sample in the original (pre-carve) split: provenance
        # for checking that train and val are disjoint.
        self.origin = torch.arange(len(labels)) if origin is None else origin

    def __len__(self) -> int:
        return self.images.shape[0]

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation randomness of `epoch` (train splits only)."""
        if self.follows_epoch:
            self.epoch = int(epoch)

    def raw_batch(self, positions: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Un-augmented ``(uint8 images, labels, indices)``: the GPU fast path.

        Move these to any device and call `augment` there; the result equals
        `get_batch` on CPU because randomness is keyed, not drawn.
        """
        index = torch.as_tensor(positions, dtype=torch.int64).reshape(-1)
        n = len(self)
        if index.numel() and (index.min() < -n or index.max() >= n):
            raise IndexError(f"index out of range for {self.name or 'split'} of size {n}")
        index = torch.remainder(index, n) if n else index
        return self.images.index_select(0, index), self.targets.index_select(0, index), index

    def augment(self, images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Apply this split's pipeline at the current epoch (any device)."""
        return self.transform(images, indices, self.seed, self.epoch)

    def get_batch(self, positions: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(images [B,C,H,W] float32, labels [B] int64, indices [B] int64)``."""
        images, labels, index = self.raw_batch(positions)
        return self.augment(images, index), labels, index

    def __getitem__(self, position: Any) -> tuple[torch.Tensor, int, int]:
        """``(image, label, index)`` of one sample."""
        images, labels, index = self.get_batch([operator.index(position)])
        return images[0], int(labels[0]), int(index[0])

    def __getitems__(self, positions: list[int]) -> list[tuple[torch.Tensor, int, int]]:
        """DataLoader batch hook: augment the whole batch in one vectorised call.

        Returns the per-sample list the DataLoader protocol expects, so any
        collate function (ours or torch's default) works unchanged.
        """
        images, labels, index = self.get_batch(positions)
        return list(zip(images.unbind(0), labels.tolist(), index.tolist()))

    def __repr__(self) -> str:
        return f"SplitDataset({self.name!r}, n={len(self)}, transform={self.transform!r})"


def carve_validation(labels: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified ``(train_positions, val_positions)``, both sorted.

    Each class contributes to validation in proportion to its frequency
    (largest-remainder rounding so the total is exactly `size`); which
    samples go is drawn from a generator seeded by `seed` alone, so the
    split is fixed for a given seed whatever else the run does.
    """
    n = labels.numel()
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"val must be an int number of training images, got {size!r}")
    if not 0 <= size < n:
        raise ValueError(f"val must be in [0, {n - 1}] for a training split of {n} images, got {size}")
    if size == 0:
        return torch.arange(n), torch.arange(0)

    # Bookkeeping in numpy: these small single-pass ops are cheaper there than
    # torch's multi-threaded kernels, which stall on a busy 2-core machine.
    values = labels.numpy()
    classes, counts = np.unique(values, return_counts=True)
    exact = counts * size / n
    quota = np.floor(exact).astype(np.int64)
    leftover = size - int(quota.sum())
    if leftover:
        # Largest remainders first; ties go to the lower class id (stable sort).
        quota[np.argsort(-(exact - quota), kind="stable")[:leftover]] += 1

    generator = torch.Generator().manual_seed(rng.seed_int(rng.DOMAIN_SPLIT, seed))
    by_class = np.split(np.argsort(values, kind="stable"), np.cumsum(counts)[:-1])
    chosen = []
    for members, take in zip(by_class, quota.tolist()):
        order = torch.randperm(len(members), generator=generator)[:take].numpy()
        chosen.append(members[order])
    val = np.sort(np.concatenate(chosen))
    keep = np.ones(n, dtype=bool)
    keep[val] = False
    return torch.from_numpy(np.flatnonzero(keep)), torch.from_numpy(val)
