"""A stage's optimizer and per-step lr multiplier, built by the library (`kdlang.library.optimizers`)
from the values the IR holds for its `optimizer` and `lr` items."""

from __future__ import annotations

from kdlang.ir import nodes as N
from kdlang.library import optimizers


def build_optimizer(stage: N.Stage, params):
    return optimizers.build_optimizer(stage.optimizer.name, params, stage.optimizer.values())


def build_lr_lambda(stage: N.Stage, epochs: int, steps_per_epoch: int):
    """multiplier(step) for LambdaLR, stepped once per batch; the base lr is the optimizer's."""
    lr = stage.lr
    name, args, kwargs = (lr.name, lr.arg_values(), lr.values()) if lr is not None else (None, [], {})
    base_lr = stage.optimizer.get("lr", 1.0) if stage.optimizer is not None else 1.0
    return optimizers.lr_multiplier(name, args, kwargs, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                    base_lr=base_lr)
