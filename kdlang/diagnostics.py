"""Compiler-style diagnostics: `file:line:col: error: message`, the source line, a caret, notes, a hint.

Every problem kdlang reports about a recipe is a `Diagnostic`; passes collect them in lists
instead of raising, so one run shows every independent problem at once.
"""

from __future__ import annotations

from typing import Iterable

import attrs

from kdlang.source import NOWHERE, Span

ERROR = "error"
WARNING = "warning"


@attrs.frozen
class Note:
    message: str
    span: Span


@attrs.frozen
class Diagnostic:
    severity: str
    message: str
    span: Span
    notes: tuple = ()
    hint: str | None = None

    def format(self, sources: "SourceMap | None" = None) -> str:
        lines = [f"{self.span}: {self.severity}: {self.message}"]
        lines += _excerpt(self.span, sources)
        for note in self.notes:
            lines.append(f"{note.span}: note: {note.message}")
            lines += _excerpt(note.span, sources)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


def error(message: str, span: Span, *, notes: Iterable[Note] = (), hint: str | None = None):
    return Diagnostic(ERROR, message, span or NOWHERE, tuple(notes), hint)


def warning(message: str, span: Span, *, notes: Iterable[Note] = (), hint: str | None = None):
    return Diagnostic(WARNING, message, span or NOWHERE, tuple(notes), hint)


class SourceMap(dict):
    """File name -> text, for printing source lines under diagnostics. Each text is split into lines
    once, not once per diagnostic (which made printing many diagnostics quadratic)."""

    def line(self, file: str, number: int) -> str | None:
        text = self.get(file)
        if text is None:
            return None
        split = self.__dict__.setdefault("_split", {})
        if file not in split or split[file][0] is not text:  # a file's text may be replaced
            split[file] = (text, text.splitlines())
        lines = split[file][1]
        return lines[number - 1] if 0 < number <= len(lines) else None


def _excerpt(span: Span, sources: SourceMap | None) -> list[str]:
    if sources is None or span is NOWHERE:
        return []
    text = sources.line(span.file, span.line)
    if text is None:
        return []
    text = text.expandtabs(1)
    width = span.end_col - span.col if span.end_line == span.line else len(text) - span.col + 1
    width = max(1, min(width, len(text) - span.col + 1))
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * (len(gutter) - 2) + "| " + " " * (span.col - 1) + "^" * width]


class RecipeError(Exception):
    """Raised by the Python API when a recipe has errors; carries the diagnostics and sources."""

    def __init__(self, diagnostics: list[Diagnostic], sources: SourceMap | None = None):
        self.diagnostics = diagnostics
        self.sources = sources
        super().__init__("\n".join(d.format(sources) for d in diagnostics))
