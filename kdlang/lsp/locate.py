"""What is under the cursor in a parsed recipe: the statement, the stage around it, and the chain
of expression nodes (outermost first) whose spans hold the cursor. Hover reads the innermost
call, keyword or name from that chain."""

from __future__ import annotations

from typing import Iterator

import attrs

from kdlang.lsp.positions import contains, same_file
from kdlang.syntax import ast


@attrs.frozen
class Spot:
    statement: object  # the statement (or stage item) holding the cursor
    stage: ast.Stage | None  # the stage it belongs to
    chain: tuple  # expression nodes holding the cursor, outermost first (calls, keywords, refs, names)

    def innermost(self, kind: type) -> object | None:
        return next((node for node in reversed(self.chain) if isinstance(node, kind)), None)


def spot(statements: tuple, file: str, line: int, col: int) -> Spot | None:
    for statement in statements:
        span = getattr(statement, "span", None)
        if span is None or not same_file(span.file, file) or not contains(span, line, col):
            continue
        if isinstance(statement, ast.Stage):
            item = next((i for i in statement.items if contains(i.span, line, col)), None)
            if item is not None:
                return Spot(item, statement, _chain(_roots(item), line, col))
            return Spot(statement, statement, _chain(statement.kwargs, line, col))
        return Spot(statement, None, _chain(_roots(statement), line, col))
    return None


def _roots(node: object) -> tuple:
    """The expressions a statement holds (its calls, values and keyword arguments)."""
    if isinstance(node, (ast.Data, ast.Model, ast.Branch)):
        return (node.source,)
    if isinstance(node, (ast.Optimizer, ast.Lr)):
        return (node.call,)
    if isinstance(node, (ast.Schedule, ast.Excite, ast.Loss)):
        return (node.value,)
    if isinstance(node, ast.Granularity):
        return tuple(kwarg for level in node.levels for kwarg in level.kwargs)
    if isinstance(node, ast.Runtime):
        return node.kwargs
    return ()


def _chain(roots: tuple, line: int, col: int) -> tuple:
    chain: list = []
    todo = [r for r in roots if contains(r.span, line, col)]
    while todo:
        node = todo.pop()
        chain.append(node)
        todo = [c for c in _inside(node) if contains(c.span, line, col)]
    return tuple(chain)


def _inside(node: object) -> Iterator[object]:
    """The children a cursor can be on: sub-expressions, plus a call's function and a keyword's name."""
    if isinstance(node, ast.Call):
        yield node.func
    if isinstance(node, ast.KwArg):
        yield node.name
    if isinstance(node, ast.Ref):
        yield node.head
        yield from (t for t in node.trail if isinstance(t, ast.Name))
    yield from ast.children(node)
