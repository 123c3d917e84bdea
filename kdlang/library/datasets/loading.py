"""A DataLoader whose every epoch is a pure function of (seed, epoch).

Reproducibility contract: the batches of epoch ``e`` (their order and their
augmentation) depend only on the dataset, `seed` and ``e``. Each call to
``iter(loader)`` runs the loader's current epoch and then advances it, so a
plain ``for epoch in range(n): for batch in loader:`` sees epochs 0..n-1; to
resume at epoch ``k`` call ``loader.set_epoch(k)`` first and the batches are
the ones an uninterrupted run would have produced.

How: before iterating, the shuffling `torch.Generator` is re-seeded from
``(seed, epoch)`` (not left to carry state across epochs), and the epoch is
passed to the dataset's and the sampler's ``set_epoch`` hooks; augmentation
randomness is keyed by (seed, epoch, index), see `rng`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from . import rng


class Batch(NamedTuple):
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


def collate(items: Sequence[tuple[Any, Any, Any]]) -> Batch:
    """Stack ``(image, label, index)`` samples into a `Batch` of tensors."""
    images = torch.stack([item[0] for item in items])
    labels = torch.as_tensor([int(item[1]) for item in items], dtype=torch.int64)
    indices = torch.as_tensor([int(item[2]) for item in items], dtype=torch.int64)
    return Batch(images, labels, indices)


class EpochLoader(DataLoader):
    """`DataLoader` with `set_epoch` and per-epoch deterministic shuffling."""

    def __init__(self, dataset: Dataset, *, seed: int, user_sampler: Sampler | None, **kwargs: Any) -> None:
        super().__init__(dataset, generator=torch.Generator(), **kwargs)
        self.seed = int(seed)
        self.epoch = 0
        self.user_sampler = user_sampler

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(loader)`` produce epoch `epoch`."""
        self.epoch = int(epoch)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        self.generator.manual_seed(rng.seed_int(rng.DOMAIN_SHUFFLE, self.seed, epoch))
        for hooked in (self.dataset, self.user_sampler):
            if hasattr(hooked, "set_epoch"):
                hooked.set_epoch(epoch)
        return super().__iter__()


def loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    drop_last: bool = False,
    sampler: Sampler | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> EpochLoader:
    """Build a reproducible loader yielding ``(images, labels, indices)`` batches.

    `sampler` (e.g. a `DistributedSampler`) replaces shuffling; its
    ``set_epoch`` is called each epoch too. Workers are re-created every epoch
    (no persistent workers) so they always see the current epoch. `pin_memory`
    (for CUDA) lets host-to-device copies overlap the step.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if sampler is not None and shuffle:
        raise ValueError("pass either shuffle=True or a sampler, not both (the sampler decides the order)")
    return EpochLoader(
        dataset,
        seed=seed,
        user_sampler=sampler,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=collate,
    )
