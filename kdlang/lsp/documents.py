"""The server's state: the open documents, and what each check learnt about each of them.

An edit is analysed in three steps of increasing cost (`kdlang.lsp.checks` says when each runs):
a parse of the document alone (syntax errors), the check without the shape pass (everything
`kdlang check --no-shapes` says, with the symbol table the navigation features read) and the full
check (models built, every tensor shaped). Each result remembers the document version it was
computed from, so a late result never overwrites a newer one.

Checks read every open document's unsaved text, not the file on disk: editing a fragment updates
the diagnostics of a recipe that `use`s it at the next check.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import attrs

from kdlang.check import Checked, check_path, check_text
from kdlang.diagnostics import Diagnostic
from kdlang.lsp.positions import uri_to_path
from kdlang.syntax import ast
from kdlang.syntax.errors import SyntaxProblem
from kdlang.syntax.parser import parse

NO_SHAPES = ("shapes", "ir")  # the quick check answers diagnostics and symbols: no IR is read from it
NEVER = ("diagram",)  # the server draws no diagram


@attrs.define
class Parsed:
    """One parse of a document's own text: its AST, or the syntax error that stopped it."""

    version: int | None
    recipe: ast.Recipe | None
    problem: Diagnostic | None


@attrs.define
class Result:
    """One check of a document (with or without the shape pass), for the text of `version`."""

    version: int | None
    checked: Checked


_Step = TypeVar("_Step", Parsed, Result)


@attrs.define
class Document:
    """An open document and its latest analyses."""

    uri: str
    path: str | None  # the real path of a `file:` document; None for an unsaved buffer
    text: str = ""
    version: int | None = None
    parsed: Parsed | None = None
    checked: Result | None = None  # the latest check without the shape pass
    shaped: Result | None = None  # the latest full check (shape pass included)
    showing_syntax_error: bool = False  # what the editor shows now is a syntax error
    analysis: Any = None  # kdlang.lsp.analysis.Analysis of the latest check, built on first use
    tasks: dict[str, Any] = attrs.field(factory=dict)  # step name -> the asyncio task running or waiting
    running: set[str] = attrs.field(factory=set)  # steps whose work has started (an edit no longer cancels it)

    @property
    def file(self) -> str:
        """The file name kdlang's spans carry for this document."""
        return self.path or self.uri

    def current(self, result: _Step | None) -> _Step | None:
        """`result` if it was computed from the text the editor shows now."""
        return result if result is not None and result.version == self.version else None

    def latest_checked(self) -> Checked | None:
        """The freshest check that got as far as a symbol table (the full check counts when newer)."""
        results = [r for r in (self.shaped, self.checked) if r is not None and r.checked.program is not None]
        if not results:
            return None
        return max(results, key=lambda r: (r.version or 0, r is self.shaped)).checked


class _OpenTexts(dict):
    """Real path -> unsaved text, looked up by any spelling of the path (the loader asks for a
    fragment as `dir/../x.kd`)."""

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(os.path.realpath(str(key)), default)


class Documents:
    """Every open document, by URI."""

    def __init__(self) -> None:
        self.by_uri: dict[str, Document] = {}

    def open(self, uri: str, text: str, version: int | None) -> Document:
        document = self.by_uri.get(uri) or Document(uri, uri_to_path(uri))
        document.text, document.version = text, version
        self.by_uri[uri] = document
        return document

    def close(self, uri: str) -> Document | None:
        return self.by_uri.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        return self.by_uri.get(uri)

    def open_texts(self) -> dict[str, str]:
        """Real path -> text of every open file (a snapshot a worker thread can read)."""
        return {d.path: d.text for d in self.by_uri.values() if d.path is not None}

    def users_of(self, document: Document) -> list[Document]:
        """The other open documents whose last check read `document` (they `use` it)."""
        if document.path is None:
            return []
        out = []
        for other in self.by_uri.values():
            checked = other.latest_checked() if other is not document else None
            if checked is not None and any(os.path.realpath(f) == document.path for f in checked.sources):
                out.append(other)
        return out


def parse_document(text: str, file: str, version: int | None) -> Parsed:
    """The syntax step: this document's text alone, no `use` followed."""
    try:
        return Parsed(version, parse(text, file), None)
    except SyntaxProblem as problem:
        return Parsed(version, None, problem.diagnostic)


def check_document(file: str, text: str, texts: dict, *, shapes: bool, on_disk: bool) -> Checked:
    """`kdlang check` of one document's `text` (`--no-shapes` unless `shapes`), the open documents'
    `texts` standing in for their files. `on_disk`: `file` is a real path, so its `use`s resolve."""
    skip = NEVER if shapes else NEVER + NO_SHAPES
    if not on_disk:
        return check_text(text, file, skip=skip)
    overlay = _OpenTexts(texts)
    overlay[os.path.realpath(file)] = text
    return check_path(file, skip=skip, texts=overlay)  # the root is read from the overlay, never from disk
