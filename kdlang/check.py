"""The front-end pipeline: load -> declare -> resolve -> graph -> validation passes -> IR -> shapes.

Each step runs only if the one before left something to work on; every problem is a diagnostic.
A pass that crashes is a kdlang bug: it is reported as an internal error at the recipe, never as a
traceback, and the remaining passes still run. A recipe without errors leaves with its IR
(`Checked.ir`), annotated by the shape pass unless that was skipped. Besides pass names, `skip`
takes "shapes" (no shape pass), "diagram" (the IR's `dot` left empty, for callers that never
draw) and "ir" (stop before the IR: the language server's quick check reads only diagnostics and
symbols).
"""

from __future__ import annotations

import sys
import traceback
import types
from pathlib import Path

import attrs

from kdlang.diagnostics import Diagnostic, SourceMap, error
from kdlang.graph import passes
from kdlang.graph.graph import RecipeGraph
from kdlang.graph.resolve import resolve
from kdlang.graph.symbols import declare
from kdlang.ir import passes as ir_passes
from kdlang.ir.build import build as build_ir
from kdlang.ir.nodes import Program as IRProgram
from kdlang.syntax.ast import Span
from kdlang.syntax.loader import Program, load_with_sources


@attrs.define
class Checked:
    """A checked recipe: its program, graph (None if it could not be built) and diagnostics."""

    program: Program | None
    graph: RecipeGraph | None
    diagnostics: list
    sources: SourceMap
    ir: IRProgram | None = None  # the resolved IR, for a recipe without errors

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def ok(self) -> bool:
        return self.program is not None and not self.errors

    def format(self) -> str:
        return "\n".join(d.format(self.sources) for d in self.diagnostics)


def check_path(path: str | Path, *, skip=(), texts: dict | None = None, seed: int | None = None) -> Checked:
    """Check a recipe file; `seed` overrides `runtime(seed=...)` for the models the shape pass builds."""
    program, diagnostics, sources = load_with_sources(path, None, texts)
    return _check(program, diagnostics, sources, skip, seed)


def check_text(text: str, file: str = "<string>", *, skip=()) -> Checked:
    program, diagnostics, sources = load_with_sources(file, text)
    return _check(program, diagnostics, sources, skip, None)


def _check(program: Program | None, diagnostics: list, sources: SourceMap, skip, seed) -> Checked:
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
        try:
            diagnostics += check(graph)
        except Exception:
            diagnostics.append(_internal(f"the `{check.__name__}` pass", program))
    ir = None
    if "ir" not in skip and not any(d.severity == "error" for d in diagnostics) and not graph.resolution.external:
        ir, problems = _lower_to_ir(graph, program, seed, shapes="shapes" not in skip,
                                     diagram="diagram" not in skip)
        diagnostics += problems
    return Checked(program, graph, _ordered(diagnostics), sources, ir)


def _lower_to_ir(graph: RecipeGraph, program: Program, seed, *, shapes: bool, diagram: bool) -> tuple:
    """The IR and the shape pass's problems; the shape pass builds models from the recipe's values,
    so it runs only once those are sound (no errors so far)."""
    try:
        ir = ir_passes.built(build_ir(graph, seed=seed, diagram=diagram))
    except Exception:
        return None, [_internal("building the IR", program)]
    if not shapes:
        return ir, []
    try:
        problems = ir_passes.run(ir)
    except Exception:
        return None, [_internal("the IR passes", program)]
    return (None if problems else ir), problems


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


class _CallableModule(types.ModuleType):
    """`kdlang.check(path)` is the public function, and `kdlang.check` is also this module: once it
    is imported, Python sets the package attribute `kdlang.check` to the module, hiding the function.
    Calling the module checks the path, so both spellings keep working whatever was imported first."""

    def __call__(self, path: str | Path) -> Checked:
        return check_path(path)


sys.modules[__name__].__class__ = _CallableModule
