"""Compiler-style diagnostics: `file:line:col: error: message`, the source line, a caret, notes, a hint.

Every problem kdlang reports about a recipe is a `Diagnostic`; passes collect them in lists
instead of raising, so one run shows every independent problem at once.
"""

from __future__ import annotations

import functools
from typing import Iterable

import attrs

from kdlang import terminal
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

    def format(self, sources: "SourceMap | None" = None, *, color: bool = False) -> str:
        """The diagnostic as the compiler prints it; `color` adds ANSI styles (the command line
        asks for them on a terminal, see `kdlang.terminal`), the words stay the same."""
        paint = functools.partial(terminal.paint, color=color)
        lines = [f"{paint(f'{self.span}:', terminal.BOLD)} "
                 f"{paint(self.severity + ':', terminal.BOLD, _SEVERITY_COLOR.get(self.severity, ''))} "
                 f"{paint(self.message, terminal.BOLD)}"]
        lines += _excerpt(self.span, sources, paint)
        for note in self.notes:
            lines.append(f"{paint(f'{note.span}:', terminal.BOLD)} {paint('note:', terminal.BOLD, terminal.CYAN)} "
                         f"{note.message}")
            lines += _excerpt(note.span, sources, paint)
        if self.hint:
            lines.append(f"  {paint('hint:', terminal.BOLD, terminal.GREEN)} {self.hint}")
        return "\n".join(lines)


_SEVERITY_COLOR = {ERROR: terminal.RED, WARNING: terminal.MAGENTA}


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


def _excerpt(span: Span, sources: SourceMap | None, paint=lambda text, *styles: text) -> list[str]:
    if sources is None or span is NOWHERE:
        return []
    text = sources.line(span.file, span.line)
    if text is None:
        return []
    text = text.expandtabs(1)
    width = span.end_col - span.col if span.end_line == span.line else len(text) - span.col + 1
    width = max(1, min(width, len(text) - span.col + 1))
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * (len(gutter) - 2) + "| " + " " * (span.col - 1) + paint("^" * width, terminal.BOLD, terminal.GREEN)]


class RecipeError(Exception):
    """Raised by the Python API when a recipe has errors; carries the diagnostics and sources."""

    def __init__(self, diagnostics: list[Diagnostic], sources: SourceMap | None = None):
        self.diagnostics = diagnostics
        self.sources = sources
        super().__init__("\n".join(d.format(sources) for d in diagnostics))
