"""Optimizers and learning-rate schedules: one entry per name, holding how a recipe calls it and how
it is built, so the checker, the docs and the runtime read the same entry.

Everything here takes plain values (no recipe syntax); torch is imported only when an optimizer is
built, so the checker can read the signatures cheaply.
"""

from __future__ import annotations

import math
from typing import Callable

import attrs

from kdlang.library.spec import Signature

R = Signature.REQUIRED


@attrs.frozen
class OptimizerKind:
    """`build(params, kwargs)` makes the torch optimizer; keywords left out keep torch's defaults,
    which `signature` states."""

    signature: Signature
    build: Callable


@attrs.frozen
class LrScheduleKind:
    """`decay(values, epochs, base_lr)` returns `t -> factor` (t in fractional epochs); `values` holds
    every keyword (defaults filled in) and the positional arguments by name. A warm-up ramp, when the
    signature takes `warmup=`, multiplies it (see `lr_multiplier`)."""

    signature: Signature
    decay: Callable


def _torch_optimizer(class_name: str) -> Callable:
    def build(params, kwargs: dict):
        import torch

        if "betas" in kwargs:  # a recipe's list; torch wants a tuple
            kwargs = {**kwargs, "betas": tuple(kwargs["betas"])}
        return getattr(torch.optim, class_name)(params, **kwargs)

    return build


OPTIMIZER_KINDS = {
    "sgd": OptimizerKind(Signature("sgd", (), {"lr": R, "momentum": 0.0, "weight_decay": 0.0, "nesterov": False},
                                   "SGD"), _torch_optimizer("SGD")),
    "adamw": OptimizerKind(Signature("adamw", (), {"lr": R, "betas": [0.9, 0.999], "weight_decay": 0.01,
                                                   "eps": 1e-8}, "AdamW"), _torch_optimizer("AdamW")),
    "adam": OptimizerKind(Signature("adam", (), {"lr": R, "betas": [0.9, 0.999], "weight_decay": 0.0, "eps": 1e-8},
                                    "Adam"), _torch_optimizer("Adam")),
}


def _progress(t: float, epochs: float) -> float:
    return min(1.0, t / max(epochs, 1e-9))


def _constant(values: dict, epochs: float, base_lr: float) -> Callable[[float], float]:
    return lambda t: 1.0


def _multistep(values: dict, epochs: float, base_lr: float) -> Callable[[float], float]:
    milestones, gamma = values.get("milestones", []), values["gamma"]
    return lambda t: gamma ** sum(t >= m for m in milestones)


def _cosine(values: dict, epochs: float, base_lr: float) -> Callable[[float], float]:
    floor = float(values["min_lr"]) / base_lr if base_lr else 0.0
    return lambda t: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * _progress(t, epochs)))


def _onecycle(values: dict, epochs: float, base_lr: float) -> Callable[[float], float]:
    """Up from 4% of `max_lr` over the first `pct_start` of the stage, then half a cosine down to 0."""
    peak = float(values["max_lr"] or base_lr) / base_lr
    pct = float(values["pct_start"])

    def decay(t: float) -> float:
        progress = _progress(t, epochs)
        if progress < pct:
            return (0.04 + (1 - 0.04) * progress / pct) * peak
        return peak * 0.5 * (1 + math.cos(math.pi * (progress - pct) / (1 - pct)))

    return decay


LR_SCHEDULE_KINDS = {
    "constant": LrScheduleKind(Signature("constant", (), {"warmup": 0},
                                         "the optimizer's lr throughout (after an optional warm-up)"), _constant),
    "multistep": LrScheduleKind(Signature("multistep", ("milestones",), {"gamma": 0.1, "warmup": 0},
                                          "lr times gamma at each milestone epoch"), _multistep),
    "cosine": LrScheduleKind(Signature("cosine", (), {"min_lr": 0.0, "warmup": 0},
                                       "cosine decay to min_lr over the stage"), _cosine),
    "onecycle": LrScheduleKind(Signature("onecycle", (), {"max_lr": None, "pct_start": 0.3},
                                         "one-cycle: up to max_lr then down (per step)"), _onecycle),
}
DEFAULT_LR_SCHEDULE = "constant"  # a stage without an `lr` item

# The checker's and the docs' view of the entries: name -> Signature.
OPTIMIZERS = {name: kind.signature for name, kind in OPTIMIZER_KINDS.items()}
LR_SCHEDULES = {name: kind.signature for name, kind in LR_SCHEDULE_KINDS.items()}


def build_optimizer(name: str, params, kwargs: dict):
    """The torch optimizer `name` over `params`, with the recipe's keywords (KeyError if unknown)."""
    return OPTIMIZER_KINDS[name].build(params, dict(kwargs))


def lr_multiplier(name: str | None, args: list, kwargs: dict, *, epochs: float, steps_per_epoch: int,
                  base_lr: float) -> Callable[[int], float]:
    """multiplier(step) of the optimizer's lr, for LambdaLR stepped once per batch; `name` None is a
    constant lr. The warm-up ramp reaches 1 at the end of step `warmup * steps_per_epoch - 1`."""
    kind = LR_SCHEDULE_KINDS[name or DEFAULT_LR_SCHEDULE]
    signature = kind.signature
    values = {**signature.keywords, **kwargs, **dict(zip(signature.positional, args))}
    decay = kind.decay(values, epochs, base_lr)
    steps = max(steps_per_epoch, 1)
    warmup = float(values.get("warmup", 0) or 0)

    def multiplier(step: int) -> float:
        t = step / steps
        ramp = min(1.0, (t + 1 / steps) / warmup) if warmup > 0 else 1.0
        return ramp * decay(t)

    return multiplier
