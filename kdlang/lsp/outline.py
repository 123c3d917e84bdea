"""Document symbols: the outline of one file's declarations, stages holding their own items and
granularities their levels (the editor's outline view, breadcrumbs and go-to-symbol)."""

from __future__ import annotations

from typing import Callable

from lsprotocol import types as lsp

from kdlang.source import Span
from kdlang.syntax import ast
from kdlang.syntax.formatter import format_statement

K = lsp.SymbolKind
_KINDS = {ast.Data: K.Module, ast.Model: K.Class, ast.Tap: K.Field, ast.Granularity: K.Struct, ast.Branch: K.Class,
          ast.Schedule: K.Function, ast.Excite: K.Variable, ast.Loss: K.Variable, ast.Stage: K.Event,
          ast.Level: K.EnumMember, ast.Report: K.Object, ast.Runtime: K.Object}

ToRange = Callable[[Span], lsp.Range]


def document_symbols(recipe: ast.Recipe, to_range: ToRange) -> list[lsp.DocumentSymbol]:
    """The outline of one parsed file (its own statements, not its fragments')."""
    return [symbol for statement in recipe.statements if (symbol := _symbol(statement, to_range)) is not None]


def _symbol(node: object, to_range: ToRange) -> lsp.DocumentSymbol | None:
    kind = _KINDS.get(type(node))
    if kind is None:
        return None
    name = getattr(node, "name", None)
    if isinstance(node, ast.Data):
        label, name_span = (name.text if name else "data"), (name.span if name else node.span)
    elif isinstance(node, (ast.Report, ast.Runtime)):
        label, name_span = type(node).__name__.lower(), node.span
    else:
        label, name_span = name.text, name.span
    children: list[lsp.DocumentSymbol] = []
    if isinstance(node, ast.Stage):
        children = [s for item in node.items if isinstance(item, (ast.Loss, ast.Excite))
                    if (s := _symbol(item, to_range)) is not None]
    elif isinstance(node, ast.Granularity):
        children = [s for level in node.levels if (s := _symbol(level, to_range)) is not None]
    detail = _detail(node)
    return lsp.DocumentSymbol(name=label, kind=kind, range=to_range(node.span), selection_range=to_range(name_span),
                              detail=detail, children=children or None)


def _detail(node: object) -> str:
    """The statement after its name: `= zoo.resnet56() frozen`, `(epochs=240)`."""
    if isinstance(node, ast.Stage):
        return format_statement(node).partition(node.name.text)[2].strip()
    text = format_statement(node)
    if isinstance(node, (ast.Report, ast.Runtime)):
        return text
    name = getattr(node, "name", None)
    return text.partition(name.text)[2].strip() if isinstance(name, ast.Name) else text
