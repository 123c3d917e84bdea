"""Optimizers and per-step learning-rate multipliers from a stage's `optimizer` and `lr` items."""

from __future__ import annotations

import math

import torch

from kdlang.graph import evaluate
from kdlang.syntax import ast


def _kwargs(call: ast.Call) -> dict:
    return {k.name.text: evaluate.value(k.value) for k in call.kwargs}


def build_optimizer(stage: ast.Stage, params) -> torch.optim.Optimizer:
    call = stage.of(ast.Optimizer)[0].call
    kwargs = _kwargs(call)
    if call.name == "sgd":
        return torch.optim.SGD(params, **kwargs)
    if call.name in ("adamw", "adam"):
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        return (torch.optim.AdamW if call.name == "adamw" else torch.optim.Adam)(params, **kwargs)
    raise KeyError(call.name)


def build_lr_lambda(stage: ast.Stage, epochs: int, steps_per_epoch: int):
    """multiplier(step) for LambdaLR, stepped once per batch; epochs are fractional inside."""
    items = stage.of(ast.Lr)
    call = items[0].call if items else None
    name = call.name if call else "constant"
    kwargs = _kwargs(call) if call else {}
    args = [evaluate.value(a) for a in call.args] if call else []
    warmup = float(kwargs.get("warmup", 0) or 0)
    base_lr = _kwargs(stage.of(ast.Optimizer)[0].call).get("lr", 1.0) if stage.of(ast.Optimizer) else 1.0

    def decay(t: float) -> float:
        if name == "multistep":
            milestones = args[0] if args else kwargs.get("milestones", [])
            return kwargs.get("gamma", 0.1) ** sum(t >= m for m in milestones)
        if name == "cosine":
            floor = float(kwargs.get("min_lr", 0.0)) / base_lr if base_lr else 0.0
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t / max(epochs, 1e-9))))
        if name == "onecycle":
            peak = float(kwargs.get("max_lr") or base_lr) / base_lr
            pct = float(kwargs.get("pct_start", 0.3))
            progress = min(1.0, t / max(epochs, 1e-9))
            if progress < pct:
                return (0.04 + (1 - 0.04) * progress / pct) * peak
            return peak * 0.5 * (1 + math.cos(math.pi * (progress - pct) / (1 - pct)))
        return 1.0

    def multiplier(step: int) -> float:
        t = step / max(steps_per_epoch, 1)
        ramp = min(1.0, (t + 1 / max(steps_per_epoch, 1)) / warmup) if warmup > 0 else 1.0
        return ramp * decay(t)

    return multiplier
