"""One document as the editor features see it: the latest check's program, symbols and graph,
the shape pass's facts when they are for the current text, and every occurrence of every name.

Built once per check result and reused by every request until the next check (hover and
completion come many times between two checks).
"""

from __future__ import annotations

from typing import Any

import attrs

from kdlang.check import Checked
from kdlang.graph.graph import RecipeGraph
from kdlang.graph.symbols import Symbols, declare
from kdlang.ir import shapes as ir_shapes
from kdlang.lsp import navigation
from kdlang.lsp.documents import Document
from kdlang.lsp.model_taps import ModelTaps


@attrs.frozen
class Analysis:
    file: str  # the document's file name, as its spans carry it
    checked: Checked
    statements: tuple  # the document's and its fragments' statements, in load order
    symbols: Symbols
    graph: RecipeGraph | None
    occurrences: list[navigation.Occurrence]
    shapes: Any  # kdlang.ir.shapes.Shapes of the current text, None before the shape pass has run on it
    model_taps: ModelTaps


def of(document: Document, model_taps: ModelTaps) -> Analysis | None:
    """The analysis of `document`'s latest check that got past parsing, None before there is one."""
    checked = document.latest_checked()
    if checked is None or checked.program is None:
        return None
    shaped = document.current(document.shaped)
    shapes = None
    if shaped is not None and shaped.checked.ir is not None and ir_shapes.KEY in shaped.checked.ir.meta:
        shapes = ir_shapes.of(shaped.checked.ir)
    cached = document.analysis
    if isinstance(cached, Analysis) and cached.checked is checked and cached.shapes is shapes:
        return cached
    program = checked.program
    symbols = checked.graph.symbols if checked.graph is not None else declare(program.statements)[0]
    analysis = Analysis(document.file, checked, program.statements, symbols, checked.graph,
                        navigation.occurrences(program.statements, symbols), shapes, model_taps)
    document.analysis = analysis
    return analysis
