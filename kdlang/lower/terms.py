"""Expand checked expressions into concrete terms: comprehensions unrolled, names bound.

A term tree is what a loss or excitation computes at run time: tensors by key (`t_feat`,
`mg.fine.code`), library loss calls (each a numbered instance with its own module), weights
(constants or schedules), sums, means and mixes. Shape inference and the torch module share it.
"""

from __future__ import annotations

from typing import Union

import attrs

from kdlang.graph import evaluate
from kdlang.graph.evaluate import NotStatic
from kdlang.library import catalog
from kdlang.library.schedules import Schedule
from kdlang.syntax import ast
from kdlang.syntax.ast import Span


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
    inputs: tuple  # tensor terms (TTensor or TList): student first, teacher second
    hyper: dict = attrs.field(eq=False)  # name -> TScalar (scheduled) or a plain value
    span: Span = attrs.field(eq=False, repr=False)


@attrs.frozen
class TBin:
    op: str
    left: object
    right: object


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


class Expander:
    """Expands one declaration's expression; loss instances are numbered within the declaration."""

    def __init__(self, symbols, owner: str):
        self.symbols = symbols
        self.owner = owner
        self.scope = owner.split(".")[0] if "." in owner else None
        self.count = 0

    def expand(self, node, env=None) -> Term:
        env = env or {}
        static = _static(node, self.symbols, env)
        if static is not None:
            return static
        if isinstance(node, ast.BinOp):
            return TBin(node.op, self.expand(node.left, env), self.expand(node.right, env))
        if isinstance(node, ast.Neg):
            return TBin("*", TScalar(-1.0, "-1"), self.expand(node.operand, env))
        if isinstance(node, ast.ListExpr):
            return TList(tuple(self.expand(item, env) for item in node.items))
        if isinstance(node, ast.Ref):
            return self._ref(node, env)
        if isinstance(node, ast.Call):
            return self._call(node, env)
        raise ValueError(f"cannot expand {type(node).__name__}")

    def _ref(self, node: ast.Ref, env) -> Term:
        head = node.head.text
        if head in env and self.symbols.lookup(head, self.scope) is None:
            level = env[head]
            attr = node.trail[0].text
            return TTensor(f"{level['granularity']}.{level['name']}.{attr}", node.span)
        if head == "label" and self.symbols.lookup(head, self.scope) is None:
            return TLabels()
        if head == "index" and self.symbols.lookup(head, self.scope) is None:
            return TIndex()
        decl = self.symbols.lookup(head, self.scope)
        if decl.kind in ("tap", "excite"):
            return TTensor(decl.key, node.span)
        if decl.kind == "branch":
            output = node.trail[0].text if node.trail else catalog.branch_outputs(decl.node.source.name)[0]
            return TTensor(f"{head}.{output}", node.span)
        if decl.kind == "granularity":
            first, attr = node.trail[0], node.trail[-1].text
            if isinstance(first, ast.Name):
                level = first.text
            elif first.head.text in env:  # `smg[l]` with `l` a loop variable
                level = env[first.head.text]["name"]
            else:  # `smg[mg.fine]`: the level of that name
                level = first.trail[0].text
            return TTensor(f"{head}.{level}.{attr}", node.span)
        raise ValueError(f"`{head}` is not a tensor")

    def _call(self, node: ast.Call, env) -> Term:
        name = node.name
        if name in catalog.loss_names():
            self.count += 1
            inputs = tuple(self.expand(a, env) for a in node.args)
            tensors = tuple(i for i in inputs if isinstance(i, (TTensor, TList)))
            hyper = {}
            for kwarg in node.kwargs:
                scalar = _static(kwarg.value, self.symbols, env)
                hyper[kwarg.name.text] = scalar if scalar is not None else evaluate.value(kwarg.value, self.symbols, env)
            return TLoss(f"{self.owner}#{self.count}", name, tensors, hyper, node.span)
        if name == "mix":
            heads = tuple(self.expand(h, env) for h in node.args[0].items)
            weights = node.kwarg("weights")
            normalize = node.kwarg("normalize")
            return TMix(heads, tuple(self.expand(w, env) for w in weights.value.items),
                        True if normalize is None else bool(evaluate.value(normalize.value)))
        items = []
        for arg in node.args:
            if isinstance(arg, ast.Comprehension):
                granularity = arg.iterable.head.text
                for level, args in evaluate.level_args(self.symbols, granularity).items():
                    bound = {**env, arg.var.text: {"granularity": granularity, "name": level, **args}}
                    items.append(self.expand(arg.body, bound))
            else:
                items.append(self.expand(arg, env))
        return TReduce(name, tuple(items))


def _static(node, symbols, env) -> TScalar | None:
    if isinstance(node, (ast.Str, ast.Bool)):
        return None
    try:
        value = evaluate.value(node, symbols, env)
    except (NotStatic, TypeError, KeyError, AttributeError):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return TScalar(float(value), _text(node))
    if isinstance(value, Schedule):
        return TScalar(value, _text(node))
    return None


def _text(node) -> str:
    try:
        from kdlang.syntax.formatter import format_expr

        return format_expr(node)
    except ImportError:  # the formatter is optional for expansion
        return type(node).__name__


def walk(term):
    """Every term in a tree, depth first."""
    yield term
    children = ()
    if isinstance(term, TBin):
        children = (term.left, term.right)
    elif isinstance(term, (TReduce, TList)):
        children = term.items
    elif isinstance(term, TMix):
        children = term.heads + term.weights
    elif isinstance(term, TLoss):
        children = term.inputs + tuple(v for v in term.hyper.values() if not isinstance(v, (int, float, str)))
    for child in children:
        yield from walk(child)


def loss_calls(term) -> list[TLoss]:
    return [t for t in walk(term) if isinstance(t, TLoss)]


def tensor_keys(term) -> list[str]:
    return list(dict.fromkeys(t.key for t in walk(term) if isinstance(t, TTensor)))
