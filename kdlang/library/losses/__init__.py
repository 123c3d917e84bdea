"""Registry of distillation losses.

>>> from kdlang.library import losses
>>> losses.names()[:3]
['ab', 'at', 'cc']
>>> m = losses.build("kd", T=4)
>>> m.T = 2.0          # rescheduled temperature, used by the next forward

``build(name, *, s_shape=None, t_shape=None, num_data=None, **hyper)`` checks the
hyperparameter names (TypeError on unknown ones) and types, then lets the loss
module size its trainable parts from the shapes (ValueError when they are
missing, :class:`ShapeError` when no adapter can reconcile them).
"""

from __future__ import annotations

import numbers
from types import ModuleType

import attrs
from torch import nn

from kdlang.library import extensions

from . import ab, at, cc, ce, code_kl, crd, dkd, fitnet, fsp, ft, kd, l1, mse, nst, pkt, rkd, sp, vid
from .base import LossInfo, ShapeError, UnknownLossError
from .ft import Paraphraser

__all__ = ["LossInfo", "Paraphraser", "ShapeError", "UnknownLossError", "build", "info", "names"]

_MODULES: tuple[ModuleType, ...] = (
    ce, kd, code_kl, fitnet, at, sp, cc, vid, rkd, pkt, ab, ft, fsp, nst, crd, dkd, mse, l1,
)
_REGISTRY: dict[str, ModuleType] = {m.INFO.name: m for m in _MODULES}


def names() -> list[str]:
    """Sorted names of all registered losses, plugins' (`acme.focal`) included."""
    return sorted([*_REGISTRY, *extensions.LOSSES])


class _PluginLoss:
    """A plugin's loss as the registry sees a built-in's module: an INFO record and `make`."""

    def __init__(self, entry: extensions.LossEntry):
        self.INFO = LossInfo(entry.name, entry.doc, f"plugin {entry.provider}", "", dict(entry.hyper),
                             needs=entry.needs, unary=entry.unary)
        self.make = entry.make


def _module(name: str):
    if isinstance(name, str) and name in extensions.LOSSES:
        return _PluginLoss(extensions.LOSSES[name])
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownLossError(
            f"unknown loss {name!r}; known losses: {', '.join(names())}"
        ) from None


def info(name: str) -> LossInfo:
    """The static description of loss ``name`` (a copy; safe to mutate its dict)."""
    record = _module(name).INFO
    return attrs.evolve(record, hyper=dict(record.hyper))


def _coerce(loss: str, key: str, default, value):
    where = f"loss {loss!r}: hyperparameter {key!r}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be a bool, got {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(value, bool):
        raise TypeError(f"{where} must be a number, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real) and float(value).is_integer():
            return int(value)
        raise TypeError(f"{where} must be an integer, got {value!r}")
    if isinstance(default, float):
        if not isinstance(value, numbers.Real):
            raise TypeError(f"{where} must be a number, got {value!r}")
        return float(value)
    return value


def build(name: str, *, s_shape=None, t_shape=None, num_data=None, **hyper) -> nn.Module:
    """Instantiate loss ``name``; see the module docstring for the contract."""
    module = _module(name)
    accepted = module.INFO.hyper
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        listed = ", ".join(accepted) if accepted else "none"
        raise TypeError(
            f"loss {name!r} got unknown hyperparameter(s) {', '.join(unknown)}; accepted: {listed}"
        )
    values = {k: _coerce(name, k, d, hyper.get(k, d)) for k, d in accepted.items()}
    return module.make(s_shape=s_shape, t_shape=t_shape, num_data=num_data, **values)
