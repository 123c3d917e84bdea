"""Loss and excitation term trees compiled once into Python closures.

A stage's terms are evaluated every training step; walking the tree and dispatching on node types
each time is pure interpreter overhead. `compile_term` does that walk once, binding loss modules
and tensor keys into closures, so a step only calls them. Evaluation order and arithmetic are the
tree's own (left to right, the same operators), so results are bit-identical to evaluating it.

Schedules are evaluated once per step into `Frame.scalars` (in the order `Schedules` lists them);
a closure reads its slot instead of calling the schedule.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import attrs
from torch import nn

from kdlang.ir import terms as T

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


@attrs.define
class Frame:
    """What one step's terms read: the tensors computed so far, the batch's labels and sample
    indices, and this step's schedule values."""

    values: dict
    labels: Any
    index: Any
    scalars: list


Closure = Callable[[Frame], Any]


class Schedules:
    """Every schedule a stage's terms use, each once: `at(t)` is the flat vector of their values."""

    def __init__(self) -> None:
        self._schedules: list[Callable[[float], float]] = []
        self._slots: dict[int, int] = {}

    def slot(self, schedule: Callable[[float], float]) -> int:
        key = id(schedule)
        if key not in self._slots:
            self._slots[key] = len(self._schedules)
            self._schedules.append(schedule)
        return self._slots[key]

    def at(self, t: float) -> list:
        return [schedule(t) for schedule in self._schedules]


def compile_term(term: T.Term, losses: dict[str, nn.Module], schedules: Schedules) -> Closure:
    """The closure computing `term` (loss modules looked up by instance name now, not per step)."""
    if isinstance(term, T.TTensor):
        key = term.key
        return lambda f: f.values[key]
    if isinstance(term, T.TList):
        items = [compile_term(t, losses, schedules) for t in term.items]
        return lambda f: [item(f) for item in items]
    if isinstance(term, T.TScalar):
        return _scalar(term, schedules)
    if isinstance(term, T.TLabels):
        return lambda f: f.labels
    if isinstance(term, T.TIndex):
        return lambda f: f.index
    if isinstance(term, T.TBin):
        op = _OPS[term.op]
        left, right = compile_term(term.left, losses, schedules), compile_term(term.right, losses, schedules)
        return lambda f: op(left(f), right(f))
    if isinstance(term, T.TReduce):
        return _reduce(term, losses, schedules)
    if isinstance(term, T.TMix):
        return _mix(term, losses, schedules)
    if isinstance(term, T.TLoss):
        return _loss(term, losses, schedules)
    raise TypeError(f"cannot compile {type(term).__name__}")


def _scalar(term: T.TScalar, schedules: Schedules) -> Closure:
    if isinstance(term.value, (int, float)):
        constant = float(term.value)
        return lambda f: constant
    slot = schedules.slot(term.value)
    return lambda f: f.scalars[slot]


def _reduce(term: T.TReduce, losses: dict[str, nn.Module], schedules: Schedules) -> Closure:
    items = [compile_term(t, losses, schedules) for t in term.items]
    count = len(items)
    mean = term.op == "mean"

    def reduce(f: Frame) -> Any:
        total = items[0](f)
        for item in items[1:]:
            total = total + item(f)
        return total / count if mean else total
    return reduce


def _mix(term: T.TMix, losses: dict[str, nn.Module], schedules: Schedules) -> Closure:
    heads = [compile_term(h, losses, schedules) for h in term.heads]
    weights = [_scalar(w, schedules) if isinstance(w, T.TScalar) else (lambda f, w=float(w): w) for w in term.weights]
    normalize = term.normalize

    def mix(f: Frame) -> Any:
        values = [head(f) for head in heads]
        found = [weight(f) for weight in weights]
        norm = sum(found) if normalize and sum(found) > 0 else 1.0
        total = values[0] * (found[0] / norm)
        for value, weight in zip(values[1:], found[1:]):
            total = total + value * (weight / norm)
        return total
    return mix


def _loss(term: T.TLoss, losses: dict[str, nn.Module], schedules: Schedules) -> Closure:
    module = losses[term.instance]
    inputs = [compile_term(t, losses, schedules) for t in term.inputs]
    if len(inputs) > 1:
        return lambda f: module(*[i(f) for i in inputs], labels=f.labels, index=f.index)
    single = inputs[0]
    return lambda f: module(single(f), f.labels)
