"""Where things are in recipe files: the bottom of the layering, so that diagnostics, the AST and
the IR can all carry positions without importing each other."""

from __future__ import annotations

import attrs


@attrs.frozen
class Span:
    """A region of one source file; lines and columns are 1-based, the end is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NOWHERE = Span("<builtin>", 1, 1, 1, 1)
