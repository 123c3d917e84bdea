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
    env = env or {}
    if isinstance(node, ast.Num):
        return node.value
    if isinstance(node, ast.Str):
        return node.value
    if isinstance(node, ast.Bool):
        return node.value
    if isinstance(node, ast.NoneLit):
        return None
    if isinstance(node, ast.ListExpr):
        return [value(item, symbols, env) for item in node.items]
    if isinstance(node, (ast.Arrow, ast.Range)):
        return (value(node.start, symbols, env), value(node.end, symbols, env))
    if isinstance(node, ast.Neg):
        inner = value(node.operand, symbols, env)
        return _lift(inner, lambda x: -x)
    if isinstance(node, ast.BinOp):
        left, right = value(node.left, symbols, env), value(node.right, symbols, env)
        return _binop(_OPS[node.op], left, right)
    if isinstance(node, ast.Call) and node.name in schedules.FUNCTIONS:
        fn, _ = schedules.FUNCTIONS[node.name]
        args = [value(a, symbols, env) for a in node.args]
        kwargs = {k.name.text: value(k.value, symbols, env) for k in node.kwargs}
        return fn(*args, **kwargs)
    if isinstance(node, ast.Ref):
        return _ref(node, symbols, env)
    raise NotStatic(node)


def _ref(node: ast.Ref, symbols, env):
    head = node.head.text
    if head in env:  # a loop variable bound to a level: `l.T`
        bound = env[head]
        if len(node.trail) == 1 and isinstance(node.trail[0], ast.Name) and node.trail[0].text == "T":
            return bound["T"]
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
        if op is operator.truediv and right == 0:
            return float("inf")
        try:
            return op(left, right)
        except OverflowError:  # a whole number too large for a float, against a float: infinite
            return op(_as_float(left), _as_float(right))
    raise NotStatic((left, right))


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
