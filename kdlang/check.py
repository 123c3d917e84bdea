"""The front-end pipeline: load -> declare -> resolve -> graph -> validation passes.

Each step runs only if the one before left something to work on; every problem is a diagnostic.
A pass that crashes is a kdlang bug: it is reported as an internal error at the recipe, never as a
traceback, and the remaining passes still run.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import attrs

from kdlang.diagnostics import Diagnostic, SourceMap, error
from kdlang.graph import passes
from kdlang.graph.graph import RecipeGraph
from kdlang.graph.resolve import resolve
from kdlang.graph.symbols import declare
from kdlang.syntax.ast import Span
from kdlang.syntax.loader import Program, load_with_sources


@attrs.define
class Checked:
    """A checked recipe: its program, graph (None if it could not be built) and diagnostics."""

    program: Program | None
    graph: RecipeGraph | None
    diagnostics: list
    sources: SourceMap

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def ok(self) -> bool:
        return self.program is not None and not self.errors

    def format(self) -> str:
        return "\n".join(d.format(self.sources) for d in self.diagnostics)


def check_path(path: str | Path, *, skip=(), texts: dict | None = None) -> Checked:
    program, diagnostics, sources = load_with_sources(path, None, texts)
    return _check(program, diagnostics, sources, skip)


def check_text(text: str, file: str = "<string>", *, skip=()) -> Checked:
    program, diagnostics, sources = load_with_sources(file, text)
    return _check(program, diagnostics, sources, skip)


def _check(program: Program | None, diagnostics: list, sources: SourceMap, skip) -> Checked:
    diagnostics = list(diagnostics)
    if program is None:
        return Checked(None, None, diagnostics, sources)
    graph = None
    try:
        symbols, problems = declare(program.statements)
        diagnostics += problems
        resolution, problems = resolve(symbols, open_names=program.fragment)
        diagnostics += problems
        graph = RecipeGraph(program, symbols, resolution)
    except Exception:  # a bug in kdlang, reported without a traceback
        diagnostics.append(_internal("building the recipe graph", program))
        return Checked(program, None, _ordered(diagnostics), sources)
    if program.fragment:
        skip = (*skip, *_library_skips(graph))
    for check in passes.PASSES:
        if check.__name__ in skip:
            continue
        if check is passes.shapes and any(d.severity == "error" for d in diagnostics):
            continue  # shapes build models from the recipe's values: only once those are sound
        try:
            diagnostics += check(graph)
        except Exception:
            diagnostics.append(_internal(f"the `{check.__name__}` pass", program))
    return Checked(program, graph, _ordered(diagnostics), sources)


def _library_skips(graph: RecipeGraph) -> tuple:
    """The passes that judge a whole recipe, not run on a fragment (`kdlang 1 fragment`) checked on
    its own: what it leaves unused, and its missing report, are the using recipe's business; and
    where it reads names of the using recipe, its stages and shapes are incomplete here."""
    skips = ["unused"] + ([] if graph.symbols.reports else ["report"])
    if graph.resolution.external:
        skips += ["stages", "shapes"]
    return tuple(skips)


def _internal(where: str, program: Program) -> Diagnostic:
    last = traceback.format_exc().strip().splitlines()[-1]
    return error(f"internal error in {where}: {last}", Span(program.root.file, 1, 1, 1, 2),
                 hint="this is a bug in kdlang, not in your recipe; please report it with the recipe")


def _ordered(diagnostics: list) -> list:
    """Errors and warnings by position, duplicates (same place, same message) dropped."""
    seen, out = set(), []
    for d in sorted(diagnostics, key=lambda d: (d.span.file, d.span.line, d.span.col)):
        key = (d.span.file, d.span.line, d.span.col, d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
