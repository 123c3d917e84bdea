"""A stage's data: its declaration turned into train/val/test loaders with reproducible order."""

from __future__ import annotations

import time

import attrs

from kdlang.ir.shapes import augment_spec


@attrs.define
class StageData:
    train: object
    val: object
    test: object
    num_train: int
    augmented: bool = True  # whether a training sample changes from epoch to epoch

    def set_epoch(self, epoch: int) -> None:
        self.train.set_epoch(epoch)

    @property
    def held_out(self):
        """The split a check during training reads: val, else test (None when there is neither)."""
        return self.val if self.val is not None else self.test


class Waited:
    """A loader's batches, adding up the seconds the consumer waited for each: the share of an
    epoch spent waiting for data, which says when `data(..., workers=N)` would help."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self.seconds = 0.0

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            started = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.seconds += time.perf_counter() - started
            yield batch


_CACHE: dict = {}


def noisy_test(recipe, stage: str, seed: int, std: float, world=None):
    """The stage's test split with Gaussian noise of `std` (pixel units, before normalisation)."""
    return stage_data(recipe, stage, seed, world, test_augment=[("noise", (float(std),), {})]).test


def stage_data(recipe, stage: str, seed: int, world=None, test_augment=(), pin_memory: bool = False) -> StageData:
    """Loaders for a stage; under DDP each rank gets its slice of the single-process batches.
    `pin_memory` for a CUDA device: batches in page-locked memory copy to it asynchronously."""
    from kdlang.library import datasets
    from kdlang.runtime.distributed import SINGLE, GlobalBatchShard, StridedShard

    world = world or SINGLE
    planned = recipe.program.stage(stage)
    data = planned.data
    kwargs = {k: v for k, v in data.call.values().items() if k not in ("batch", "workers")}
    batch, workers = planned.batch, data.workers
    augment = [augment_spec(a) for a in data.augment]
    test_augment = [augment_spec(a) for a in data.test_augment] + list(test_augment)
    cache_key = (data.call.name, repr(sorted(kwargs.items())), repr(augment), repr(test_augment), seed)
    bundle = _CACHE.get(cache_key)
    if bundle is None:
        bundle = _CACHE[cache_key] = datasets.build(data.call.name, augment=augment, seed=seed,
                                                    test_augment=list(test_augment), **kwargs)
    train = datasets.loader(bundle.train, batch_size=batch // world.size, shuffle=False, seed=seed,
                            num_workers=workers, sampler=GlobalBatchShard(len(bundle.train), batch, world, seed),
                            pin_memory=pin_memory)

    def evaluation(split):
        if split is None:
            return None
        sampler = StridedShard(len(split), world) if world.active else None
        return datasets.loader(split, batch_size=batch, shuffle=False, seed=seed, num_workers=workers, sampler=sampler,
                               pin_memory=pin_memory)

    augmented = any(name != "normalize" for name, _, _ in augment)
    return StageData(train, evaluation(bundle.val), evaluation(bundle.test), bundle.num_train, augmented)
