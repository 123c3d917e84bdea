"""Where each declared name is declared and read: go-to-definition and find-references.

The checker's symbol table (`kdlang.graph.symbols`) knows where each name is declared; this module
adds where each is read, by walking the loaded program's statements (the document's and every
fragment's it `use`s, each with its own file in its spans) with the checker's scoping rules: a
stage's own `loss`/`excite` first, then the top level; a comprehension's variable hides nothing
outside its body. Granularity levels (`mg.fine`, `level fine`) are names too; a mirror's levels
are the mirrored granularity's.
"""

from __future__ import annotations

import os
from typing import Iterator

import attrs

from kdlang.graph.symbols import Decl, Symbols
from kdlang.lsp.positions import contains, same_file
from kdlang.source import Span
from kdlang.syntax import ast


@attrs.frozen
class Occurrence:
    """One place a declared name is written: where it is declared, or where it is read."""

    key: str  # the declaration's key (`distill.kd` for a stage's own loss, `mg.fine` for a level)
    span: Span
    declaration: bool


def occurrences(statements: tuple, symbols: Symbols) -> list[Occurrence]:
    """Every declaration and reference of a declared name in `statements`, in source order."""
    finder = _Finder(symbols)
    for statement in statements:
        finder.statement(statement)
    return finder.found


def at(found: list[Occurrence], file: str, line: int, col: int) -> Occurrence | None:
    """The occurrence under the cursor at 1-based (line, col) of `file`."""
    return next((o for o in found if same_file(o.span.file, file) and contains(o.span, line, col)), None)


def declaration(found: list[Occurrence], key: str) -> Occurrence | None:
    return next((o for o in found if o.key == key and o.declaration), None)


def references(found: list[Occurrence], key: str, *, include_declaration: bool) -> list[Occurrence]:
    return [o for o in found if o.key == key and (include_declaration or not o.declaration)]


def use_at(recipe: ast.Recipe, line: int, col: int) -> str | None:
    """The real path of the fragment named by the `use` statement under the cursor."""
    for statement in recipe.statements:
        if isinstance(statement, ast.Use) and contains(statement.span, line, col):
            return os.path.realpath(os.path.join(os.path.dirname(recipe.file), statement.path))
    return None


class _Finder(ast.Visitor):
    def __init__(self, symbols: Symbols):
        self.symbols = symbols
        self.found: list[Occurrence] = []
        self.scope: str | None = None
        self.bound: set[str] = set()  # comprehension variables in force

    # ---- statements ------------------------------------------------------------------------
    def statement(self, node: object) -> None:
        name = getattr(node, "name", None)
        if isinstance(node, ast.Stage):
            self._declared(node.name, None)
            self.scope = node.name.text
            for kwarg in node.kwargs:
                self.visit(kwarg)
            for item in node.items:
                self.statement(item)
            self.scope = None
            return
        if isinstance(name, ast.Name):
            self._declared(name, self.scope if isinstance(node, (ast.Loss, ast.Excite)) else None)
        for child in self._parts(node):
            if isinstance(child, ast.Name):
                self._read(child)
            else:
                self.visit(child)
        if isinstance(node, ast.Granularity):
            for level in node.levels:
                self._add(f"{node.name.text}.{level.name.text}", level.name.span, True)
                for kwarg in level.kwargs:
                    self.visit(kwarg)

    def _parts(self, node: object) -> Iterator[object]:
        """The names a statement reads and the expressions it holds."""
        if isinstance(node, ast.Tap):
            yield node.model
        if isinstance(node, (ast.Granularity, ast.Branch)):
            yield node.tap
        if isinstance(node, ast.Granularity) and node.mirrors is not None:
            yield node.mirrors
        checkpoint = getattr(node, "checkpoint", None)
        if isinstance(checkpoint, ast.Checkpoint) and checkpoint.stage is not None:
            yield checkpoint.stage
        if isinstance(node, (ast.Train, ast.Evaluate, ast.Losses)):
            yield from node.names
        if isinstance(node, (ast.Data, ast.Model, ast.Branch)):
            yield node.source
        if isinstance(node, (ast.Optimizer, ast.Lr)):
            yield node.call
        if isinstance(node, (ast.Schedule, ast.Excite, ast.Loss)):
            yield node.value

    # ---- expressions -----------------------------------------------------------------------
    def visit_Comprehension(self, node: ast.Comprehension) -> None:
        self.visit(node.iterable)
        was_bound = node.var.text in self.bound
        self.bound.add(node.var.text)
        self.visit(node.body)
        if not was_bound:
            self.bound.discard(node.var.text)

    def visit_Ref(self, node: ast.Ref) -> None:
        decl = self._read(node.head) if node.head.text not in self.bound else None
        if decl is not None and decl.kind == "granularity" and node.trail and isinstance(node.trail[0], ast.Name):
            level = self._level_key(decl, node.trail[0].text)
            if level is not None:
                self._add(level, node.trail[0].span, False)
        self.generic_visit(node)

    # ---- bookkeeping -----------------------------------------------------------------------
    def _declared(self, name: ast.Name, scope: str | None) -> None:
        key = f"{scope}.{name.text}" if scope else name.text
        decl = self.symbols.decls.get(key)
        if decl is not None and decl.span == name.span:  # not a duplicate the checker refused
            self._add(key, name.span, True)

    def _read(self, name: ast.Name) -> Decl | None:
        decl = self.symbols.lookup(name.text, self.scope)
        if decl is not None:
            self._add(decl.key, name.span, False)
        return decl

    def _add(self, key: str, span: Span, declaration: bool) -> None:
        self.found.append(Occurrence(key, span, declaration))

    def _level_key(self, decl: Decl, level: str, depth: int = 0) -> str | None:
        """`mg.fine` for level `fine` of `mg`, or of the granularity `mg` mirrors (followed to its source)."""
        node = decl.node
        if any(lv.name.text == level for lv in node.levels):
            return f"{decl.name}.{level}"
        mirrored = self.symbols.lookup(node.mirrors.text) if node.mirrors is not None else None
        if mirrored is not None and mirrored.kind == "granularity" and depth < 16:
            return self._level_key(mirrored, level, depth + 1)
        return None
