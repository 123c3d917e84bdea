"""A stage's data: its declaration turned into train/val/test loaders with reproducible order."""

from __future__ import annotations

import attrs

from kdlang.graph import evaluate
from kdlang.lower.plan import AUGMENT_KEYS, augment_spec
from kdlang.syntax import ast


@attrs.define
class StageData:
    train: object
    val: object
    test: object
    num_train: int
    augmented: bool = True  # whether a training sample changes from epoch to epoch

    def set_epoch(self, epoch: int) -> None:
        self.train.set_epoch(epoch)


_CACHE: dict = {}


def noisy_test(recipe, stage: str, seed: int, std: float, world=None):
    """The stage's test split with Gaussian noise of `std` (pixel units, before normalisation)."""
    return stage_data(recipe, stage, seed, world, test_augment=[("noise", (float(std),), {})]).test


def stage_data(recipe, stage: str, seed: int, world=None, test_augment=()) -> StageData:
    """Loaders for a stage; under DDP each rank gets its slice of the single-process batches."""
    from kdlang.library import datasets
    from kdlang.runtime.distributed import SINGLE, GlobalBatchShard, StridedShard

    world = world or SINGLE
    key = recipe.graph.stage_data(stage)
    node: ast.Data = recipe.graph.decl(key).node
    kwargs = {k.name.text: evaluate.value(k.value) for k in node.source.kwargs if k.name.text not in AUGMENT_KEYS}
    batch = int(kwargs.pop("batch", 64))
    workers = int(kwargs.pop("workers", 0))
    stage_node = recipe.graph.decl(stage).node
    stage_batch = next((evaluate.value(k.value) for k in stage_node.kwargs if k.name.text == "batch"), None)
    batch = int(stage_batch or batch)
    augment = [augment_spec(a) for a in node.source.list_items("augment")]
    test_augment = [augment_spec(a) for a in node.source.list_items("test_augment")] + list(test_augment)
    cache_key = (node.source.name, repr(sorted(kwargs.items())), repr(augment), repr(test_augment), seed)
    bundle = _CACHE.get(cache_key)
    if bundle is None:
        bundle = _CACHE[cache_key] = datasets.build(node.source.name, augment=augment, seed=seed,
                                                    test_augment=list(test_augment), **kwargs)
    train = datasets.loader(bundle.train, batch_size=batch // world.size, shuffle=False, seed=seed,
                            num_workers=workers, sampler=GlobalBatchShard(len(bundle.train), batch, world, seed))

    def evaluation(split):
        if split is None:
            return None
        sampler = StridedShard(len(split), world) if world.active else None
        return datasets.loader(split, batch_size=batch, shuffle=False, seed=seed, num_workers=workers, sampler=sampler)

    augmented = any(name != "normalize" for name, _, _ in augment)
    return StageData(train, evaluation(bundle.val), evaluation(bundle.test), bundle.num_train, augmented)
