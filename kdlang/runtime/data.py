"""A stage's data: its declaration turned into train/val/test loaders with reproducible order."""

from __future__ import annotations

import attrs

from kdlang.graph import evaluate
from kdlang.syntax import ast


@attrs.define
class StageData:
    train: object
    val: object
    test: object
    num_train: int

    def set_epoch(self, epoch: int) -> None:
        self.train.set_epoch(epoch)


_CACHE: dict = {}


def stage_data(recipe, stage: str, seed: int) -> StageData:
    from kdlang.library import datasets

    key = recipe.graph.stage_data(stage)
    node: ast.Data = recipe.graph.decl(key).node
    kwargs = {k.name.text: evaluate.value(k.value) for k in node.source.kwargs if k.name.text != "augment"}
    batch = int(kwargs.pop("batch", 64))
    workers = int(kwargs.pop("workers", 0))
    stage_node = recipe.graph.decl(stage).node
    stage_batch = next((evaluate.value(k.value) for k in stage_node.kwargs if k.name.text == "batch"), None)
    batch = int(stage_batch or batch)
    augment = [_augmentation(a) for a in _augment_nodes(node)]
    cache_key = (node.source.name, repr(sorted(kwargs.items())), repr(augment), seed)
    bundle = _CACHE.get(cache_key)
    if bundle is None:
        bundle = _CACHE[cache_key] = datasets.build(node.source.name, augment=augment, seed=seed, **kwargs)
    make = lambda split, shuffle: (datasets.loader(split, batch_size=batch, shuffle=shuffle, seed=seed,
                                                   num_workers=workers) if split is not None else None)
    return StageData(make(bundle.train, True), make(bundle.val, False), make(bundle.test, False), bundle.num_train)


def _augment_nodes(node: ast.Data):
    augment = node.source.kwarg("augment")
    return augment.value.items if augment is not None else ()


def _augmentation(call: ast.Call):
    return (call.name, tuple(evaluate.value(a) for a in call.args),
            {k.name.text: evaluate.value(k.value) for k in call.kwargs})
