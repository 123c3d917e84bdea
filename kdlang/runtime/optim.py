"""A stage's optimizer and per-step lr multiplier: its `optimizer` and `lr` items evaluated, then
built by the library (`kdlang.library.optimizers`)."""

from __future__ import annotations

from kdlang.graph import evaluate
from kdlang.library import optimizers
from kdlang.syntax import ast


def _values(call: ast.Call) -> tuple[list, dict]:
    return [evaluate.value(a) for a in call.args], {k.name.text: evaluate.value(k.value) for k in call.kwargs}


def build_optimizer(stage: ast.Stage, params):
    call = stage.of(ast.Optimizer)[0].call
    return optimizers.build_optimizer(call.name, params, _values(call)[1])


def build_lr_lambda(stage: ast.Stage, epochs: int, steps_per_epoch: int):
    """multiplier(step) for LambdaLR, stepped once per batch; the base lr is the optimizer's."""
    lr, optimizer = stage.of(ast.Lr), stage.of(ast.Optimizer)
    name, (args, kwargs) = (lr[0].call.name, _values(lr[0].call)) if lr else (None, ([], {}))
    base_lr = _values(optimizer[0].call)[1].get("lr", 1.0) if optimizer else 1.0
    return optimizers.lr_multiplier(name, args, kwargs, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                    base_lr=base_lr)
