"""Term trees: what a loss or excitation computes at run time, with comprehensions unrolled.

A term is a tensor by key (`t_feat`, `mg.fine.code`, `proj.out`), a library loss call (a numbered
instance with its own module), a weight (a constant or a schedule), a sum, mean or mix. Shape
inference, the stage module and the IR printer all read the same trees.
"""

from __future__ import annotations

from typing import Iterator, Union

import attrs

from kdlang.library.schedules import Schedule
from kdlang.source import Span


@attrs.frozen
class TTensor:
    key: str  # a tap, excitation, `G.level.code|logits` or `branch.output`
    span: Span = attrs.field(eq=False, repr=False)


@attrs.frozen
class TList:
    items: tuple


@attrs.frozen
class TScalar:
    """A number or a schedule; `text` is how the recipe wrote it (for the IR and logs)."""

    value: Union[float, Schedule]
    text: str

    def at(self, t: float) -> float:
        return self.value(t) if isinstance(self.value, Schedule) else float(self.value)


@attrs.frozen
class TLabels:
    pass


@attrs.frozen
class TIndex:
    pass


@attrs.frozen
class TLoss:
    instance: str  # unique module name, e.g. `distill.codes#1`
    fn: str  # library loss name
    inputs: tuple[Union[TTensor, TList], ...]  # student first, teacher second
    hyper: dict[str, object] = attrs.field(eq=False)  # name -> TScalar (scheduled) or a plain value
    span: Span = attrs.field(eq=False, repr=False)


@attrs.frozen
class TBin:
    op: str
    left: "Term"
    right: "Term"


@attrs.frozen
class TReduce:
    op: str  # sum | mean
    items: tuple


@attrs.frozen
class TMix:
    heads: tuple
    weights: tuple  # TScalar
    normalize: bool


Term = Union[TTensor, TList, TScalar, TLabels, TIndex, TLoss, TBin, TReduce, TMix]


def children(term: Term) -> tuple[Term, ...]:
    if isinstance(term, TBin):
        return (term.left, term.right)
    if isinstance(term, (TReduce, TList)):
        return term.items
    if isinstance(term, TMix):
        return term.heads + term.weights
    if isinstance(term, TLoss):
        return term.inputs + tuple(v for v in term.hyper.values() if isinstance(v, TScalar))
    return ()


def walk(term: Term) -> Iterator[Term]:
    """Every term in a tree, depth first, parents before children."""
    todo = [term]
    while todo:
        current = todo.pop()
        yield current
        todo.extend(reversed(children(current)))


def loss_calls(term: Term) -> list[TLoss]:
    return [t for t in walk(term) if isinstance(t, TLoss)]


def tensor_keys(term: Term) -> list[str]:
    return list(dict.fromkeys(t.key for t in walk(term) if isinstance(t, TTensor)))
