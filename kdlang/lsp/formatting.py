"""Formatting: the whole document through `kdlang fmt`'s formatter, as one edit.

A document that does not parse is left as it is (its syntax error is already on screen); one that
is already canonical gets no edit, so the editor marks nothing as changed.
"""

from __future__ import annotations

from lsprotocol import types as lsp
from pygls.workspace import PositionCodec

from kdlang.lsp.positions import document_end
from kdlang.syntax.errors import SyntaxProblem
from kdlang.syntax.formatter import format_text


def formatting_edits(text: str, file: str, codec: PositionCodec) -> list[lsp.TextEdit] | None:
    """The edits that make `text` canonical: [] when it is, None when it does not parse."""
    try:
        pretty = format_text(text, file)
    except SyntaxProblem:
        return None
    if pretty == text:
        return []
    whole = lsp.Range(start=lsp.Position(line=0, character=0), end=document_end(text, codec))
    return [lsp.TextEdit(range=whole, new_text=pretty)]
