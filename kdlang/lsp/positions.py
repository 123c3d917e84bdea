"""The one place where kdlang positions and LSP positions meet.

kdlang spans (`kdlang.source.Span`) are 1-based lines and columns counted in characters (code
points), end exclusive; LSP positions are 0-based, with columns in the code units the client
negotiated (UTF-16 unless it asked otherwise). pygls's `PositionCodec` does the unit counting;
this module adds the 1-based/0-based shift and the file-name/URI mapping, so no feature module
does either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote, urlparse

from lsprotocol import types as lsp
from pygls.workspace import PositionCodec

from kdlang.source import Span

Lines = Sequence[str]


def span_to_range(span: Span, lines: Lines, codec: PositionCodec) -> lsp.Range:
    """The LSP range of `span` in a file whose text is `lines`."""
    start = _to_client(span.line, span.col, lines, codec)
    end = _to_client(span.end_line, span.end_col, lines, codec)
    return lsp.Range(start=start, end=end if (end.line, end.character) >= (start.line, start.character) else start)


def _to_client(line: int, col: int, lines: Lines, codec: PositionCodec) -> lsp.Position:
    row = max(0, line - 1)
    if not lines:
        return lsp.Position(line=0, character=0)
    if row >= len(lines):  # past the last line: its end
        return lsp.Position(line=len(lines) - 1, character=codec.client_num_units(lines[-1].rstrip("\r\n")))
    text = lines[row].rstrip("\r\n")
    chars = min(max(0, col - 1), len(text))
    return lsp.Position(line=row, character=codec.client_num_units(text[:chars]))


def document_end(text: str, codec: PositionCodec) -> lsp.Position:
    """The position just after the last character of `text`."""
    lines = text.split("\n")
    return lsp.Position(line=len(lines) - 1, character=codec.client_num_units(lines[-1]))


def position_to_point(position: lsp.Position, lines: Lines, codec: PositionCodec) -> tuple[int, int]:
    """The kdlang (line, col), 1-based in characters, of an LSP position."""
    server = codec.position_from_client_units(list(lines), lsp.Position(line=position.line,
                                                                        character=position.character))
    return server.line + 1, server.character + 1


def contains(span: Span, line: int, col: int) -> bool:
    """`(line, col)` (1-based) lies in `span`, its end included (a cursor just after a name is on it)."""
    return (span.line, span.col) <= (line, col) <= (span.end_line, span.end_col)


def uri_to_path(uri: str) -> str | None:
    """The real path of a `file:` URI, None for any other scheme (an unsaved buffer)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return os.path.realpath(unquote(parsed.path))


def path_to_uri(path: str) -> str:
    return Path(os.path.realpath(path)).as_uri()


def same_file(a: str, b: str) -> bool:
    """Two file names kdlang wrote (a `use`d fragment is `dir/../x.kd`) name the same file."""
    return a == b or os.path.realpath(a) == os.path.realpath(b)
