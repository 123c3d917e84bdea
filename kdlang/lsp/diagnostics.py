"""kdlang's diagnostics as the editor shows them.

A diagnostic in the document itself keeps its exact range; its notes become related locations and
its hint ends the message, as `kdlang check` prints them. A diagnostic inside a fragment the
document `use`s (directly or through other fragments) is shown on that `use` line, its message
prefixed with where it really is, and that place as a related location: the editor publishes
diagnostics per file, and the fragment's own are the fragment's business when it is open.
"""

from __future__ import annotations

import os
from typing import Iterable

from lsprotocol import types as lsp
from pygls.workspace import PositionCodec

from kdlang.diagnostics import ERROR, Diagnostic, SourceMap
from kdlang.lsp.documents import Document
from kdlang.lsp.positions import path_to_uri, same_file, span_to_range
from kdlang.source import NOWHERE, Span
from kdlang.syntax import ast

SOURCE = "kdlang"
_SEVERITY = {ERROR: lsp.DiagnosticSeverity.Error}


def current(document: Document, codec: PositionCodec) -> list[lsp.Diagnostic] | None:
    """What the editor should show for the document's text now: its syntax error if it has one,
    else the newest check of this very text (the full check when it is as new); None when no step
    has finished on this text yet (what is shown stays)."""
    parsed = document.current(document.parsed)
    if parsed is not None and parsed.problem is not None:
        return to_lsp([parsed.problem], document.file, SourceMap({document.file: document.text}), (), codec)
    result = document.current(document.shaped) or document.current(document.checked)
    if result is not None:
        checked = result.checked
        return to_lsp(checked.diagnostics, document.file, checked.sources,
                      checked.program.files if checked.program is not None else (), codec)
    if parsed is not None and document.showing_syntax_error:  # fixed: clear it now, not after the check
        return []
    return None


def shows_syntax_error(document: Document) -> bool:
    """What `current` gives for the document now is a syntax error of its own text."""
    parsed = document.current(document.parsed)
    if parsed is not None:
        return parsed.problem is not None
    result = document.current(document.shaped) or document.current(document.checked)
    return result is not None and result.checked.program is None


def to_lsp(found: Iterable[Diagnostic], file: str, sources: SourceMap, files: Iterable[ast.Recipe],
           codec: PositionCodec) -> list[lsp.Diagnostic]:
    """The LSP diagnostics of document `file` for the `found` diagnostics of its check; `sources`
    holds every text the check read, `files` every recipe it parsed (the document's first)."""
    files = list(files)
    root = next((f for f in files if same_file(f.file, file)), None)
    carriers = _use_carriers(root, files) if root is not None else {}
    out = []
    for diagnostic in found:
        span = diagnostic.span
        if span is NOWHERE or same_file(span.file, file):
            out.append(_converted(diagnostic, span if span is not NOWHERE else Span(file, 1, 1, 1, 1),
                                  "", sources, codec))
            continue
        carrier = carriers.get(os.path.realpath(span.file))
        where = f"{os.path.relpath(span.file, os.path.dirname(file))}:{span.line}:{span.col}: "
        anchor = carrier.span if carrier is not None else Span(file, 1, 1, 1, 1)
        converted = _converted(diagnostic, anchor, where, sources, codec)
        converted.related_information = [_related(span, "here", sources, codec), *(converted.related_information or [])]
        out.append(converted)
    return out


def _converted(diagnostic: Diagnostic, at: Span, prefix: str, sources: SourceMap, codec: PositionCodec) -> lsp.Diagnostic:
    message = prefix + diagnostic.message + (f"\nhint: {diagnostic.hint}" if diagnostic.hint else "")
    related = [_related(note.span, note.message, sources, codec) for note in diagnostic.notes if note.span is not NOWHERE]
    return lsp.Diagnostic(
        range=span_to_range(at, _lines(sources, at.file), codec),
        message=message,
        severity=_SEVERITY.get(diagnostic.severity, lsp.DiagnosticSeverity.Warning),
        source=SOURCE,
        related_information=related or None,
    )


def _related(span: Span, message: str, sources: SourceMap, codec: PositionCodec) -> lsp.DiagnosticRelatedInformation:
    location = lsp.Location(uri=path_to_uri(span.file), range=span_to_range(span, _lines(sources, span.file), codec))
    return lsp.DiagnosticRelatedInformation(location=location, message=message)


def _lines(sources: SourceMap, file: str) -> list[str]:
    text = sources.get(file)
    if text is None:
        text = next((t for f, t in sources.items() if same_file(f, file)), "")
    return text.splitlines(keepends=True)


def _use_carriers(root: ast.Recipe, files: list[ast.Recipe]) -> dict[str, ast.Use]:
    """Real path of every file the root reads through `use` -> the root's `use` that brings it in."""
    by_path = {os.path.realpath(f.file): f for f in files}
    carriers: dict[str, ast.Use] = {}
    for use in (s for s in root.statements if isinstance(s, ast.Use)):
        todo = [os.path.realpath(os.path.join(os.path.dirname(root.file), use.path))]
        while todo:
            path = todo.pop()
            if path in carriers:
                continue
            carriers[path] = use
            recipe = by_path.get(path)
            if recipe is not None:
                todo += [os.path.realpath(os.path.join(os.path.dirname(path), u.path))
                         for u in recipe.statements if isinstance(u, ast.Use)]
    return carriers
