"""Evaluate the static parts of expressions: constants, lists, and schedules as Python callables.

Shared by the checker (range checks) and the lowering (the values a run uses), so both agree.
"""

from __future__ import annotations

import math
import operator
import sys

from kdlang.library import schedules
from kdlang.syntax import ast
from kdlang.syntax.parser import MAX_DEPTH

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_EXPANDING = "#expanding"  # env key of the schedules being expanded; never a recipe name


class NotStatic(Exception):
    """The expression depends on something only known at run time (a tensor, a loss)."""


def value(node, symbols=None, env=None):
    """A Python value for a static expression: numbers, strings, lists, (a, b) pairs, schedules."""
    return _Evaluator(symbols, env or {}).visit(node)


class _Evaluator(ast.Visitor):
    """One evaluation: `symbols` resolves schedule and level names, `env` binds loop variables."""

    def __init__(self, symbols, env: dict):
        self.symbols = symbols
        self.env = env

    def generic_visit(self, node):
        raise NotStatic(node)

    def visit_Num(self, node):
        return node.value

    visit_Str = visit_Bool = visit_Num

    def visit_NoneLit(self, node):
        return None

    def visit_ListExpr(self, node):
        return [self.visit(item) for item in node.items]

    def visit_Arrow(self, node):
        return (self.visit(node.start), self.visit(node.end))

    visit_Range = visit_Arrow

    def visit_Neg(self, node):
        return _lift(self.visit(node.operand), lambda x: -x)

    def visit_BinOp(self, node):
        return _binop(_OPS[node.op], self.visit(node.left), self.visit(node.right))

    def visit_Call(self, node):
        if node.name not in schedules.FUNCTIONS:
            raise NotStatic(node)
        fn, _ = schedules.FUNCTIONS[node.name]
        return fn(*[self.visit(a) for a in node.args], **{k.name.text: self.visit(k.value) for k in node.kwargs})

    def visit_Ref(self, node: ast.Ref):
        head, env, symbols = node.head.text, self.env, self.symbols
        if head in env:  # a loop variable bound to a level: `l.T`
            if len(node.trail) == 1 and isinstance(node.trail[0], ast.Name) and node.trail[0].text == "T":
                return env[head]["T"]
            raise NotStatic(node)
        decl = symbols.lookup(head) if symbols is not None else None
        if decl is not None and decl.kind == "schedule" and not node.trail:
            expanding = env.get(_EXPANDING, frozenset())
            if head in expanding or len(expanding) > MAX_DEPTH:  # a cycle, or a chain resolve reported
                raise NotStatic(node)
            return as_schedule(value(decl.node.value, symbols, {**env, _EXPANDING: expanding | {head}}))
        if decl is not None and decl.kind == "granularity" and len(node.trail) == 2:
            level, attr = node.trail
            if isinstance(level, ast.Name) and isinstance(attr, ast.Name) and attr.text == "T":
                return level_args(symbols, head).get(level.text, {}).get("T", 1.0)
        raise NotStatic(node)


def as_schedule(x) -> schedules.Schedule:
    return x if isinstance(x, schedules.Schedule) else schedules.constant(float(x))


def _lift(x, fn):
    if isinstance(x, schedules.Schedule):
        return schedules.Schedule(lambda t: fn(x(t)), x.span_epochs, x.milestones)
    if isinstance(x, (int, float)):
        return fn(x)
    raise NotStatic(x)


def _binop(op, left, right):
    if isinstance(left, schedules.Schedule) or isinstance(right, schedules.Schedule):
        return as_schedule(left).combine(as_schedule(right), op)
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        if op is operator.truediv and right == 0:  # IEEE's answer, not an exception
            return math.nan if left == 0 else math.copysign(math.inf, left) * math.copysign(1.0, right)
        try:
            return op(left, right)
        except OverflowError:  # a whole number too large for a float, against a float: infinite
            return op(_as_float(left), _as_float(right))
    raise NotStatic((left, right))


def arithmetic(op: str, left, right):
    """`left op right` for two constants as the evaluator computes it (the checker's typing folds
    constants with it, so both agree); None when either side is not a known number."""
    if left is None or right is None:
        return None
    try:
        return _binop(_OPS[op], left, right)
    except NotStatic:
        return None


def _as_float(x) -> float:
    return x if isinstance(x, float) or abs(x) <= sys.float_info.max else math.inf if x > 0 else -math.inf


def mirrored(symbols, granularity: str):
    """The granularity node whose levels `granularity` has, following `mirrors` (without recursion:
    chains may be long); None for an unknown name or a cycle."""
    seen = set()
    while granularity not in seen:
        seen.add(granularity)
        decl = symbols.lookup(granularity)
        if decl is None or decl.kind != "granularity":
            return None
        if decl.node.mirrors is None:
            return decl.node
        granularity = decl.node.mirrors.text
    return None


def level_args(symbols, granularity: str) -> dict:
    """{level: {"code": int, "T": float, "hidden": int|None}}, following `mirrors`."""
    node = mirrored(symbols, granularity)
    out = {}
    for level in node.levels if node is not None else ():
        args = {"code": None, "T": 1.0, "hidden": None}
        for kwarg in level.kwargs:
            try:
                args[kwarg.name.text] = value(kwarg.value, symbols)
            except NotStatic:
                args[kwarg.name.text] = None
        out[level.name.text] = args
    return out
