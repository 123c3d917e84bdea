"""The language server: the protocol's messages wired to the feature modules.

Every handler runs guarded: an exception inside one is logged to the client (`window/logMessage`)
and answered with "nothing here", never a dead server. Requests are answered from the latest
analysis; one that arrives before the first check of a document waits for it (up to a few seconds).
"""

from __future__ import annotations

import asyncio
import functools
import sys
import traceback
from typing import Any, Callable

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from kdlang.lsp import analysis as analyses
from kdlang.lsp import completion, diagnostics, formatting, hover, navigation, outline
from kdlang.lsp.checks import Checker, Settings
from kdlang.lsp.documents import Document, Documents
from kdlang.lsp.model_taps import ModelTaps
from kdlang.lsp.positions import path_to_uri, position_to_point, same_file, span_to_range
from kdlang.source import Span
from kdlang.syntax import ast
from kdlang.version import __version__

FIRST_CHECK_WAIT = 20.0  # seconds a request waits for a document's first check (torch's import included)


class KdlangServer(LanguageServer):
    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__("kdlang", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.settings = settings or Settings()
        self.documents = Documents()
        self.model_taps = ModelTaps()
        self.checker = Checker(self.documents, self.settings, self.publish, self.log)

    # ---- helpers the handlers share -------------------------------------------------------------
    def log(self, message: str, kind: lsp.MessageType = lsp.MessageType.Error) -> None:
        self.window_log_message(lsp.LogMessageParams(type=kind, message=message))

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls's own errors (a malformed message, say) are logged, never shown as pop-ups."""
        self.log(f"kdlang: {type(error).__name__}: {error}")

    def publish(self, document: Document) -> None:
        found = diagnostics.current(document, self.workspace.position_codec)
        if found is None:
            return
        document.showing_syntax_error = diagnostics.shows_syntax_error(document)
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=document.uri, diagnostics=found, version=document.version))

    def document(self, uri: str) -> Document | None:
        return self.documents.get(uri)

    async def analysis(self, document: Document) -> analyses.Analysis | None:
        """The document's analysis, waiting for its first check when there is none yet."""
        if document.latest_checked() is None:
            await self.checker.settled(document, timeout=FIRST_CHECK_WAIT)
        return analyses.of(document, self.model_taps)

    async def analysed(self, uri: str) -> tuple[Document, analyses.Analysis] | None:
        """An open document and its analysis; None for a document not open or not yet parsed once."""
        document = self.document(uri)
        found = await self.analysis(document) if document is not None else None
        return (document, found) if document is not None and found is not None else None

    async def in_thread(self, work: Callable[[], Any]) -> Any:
        """Work that may build a model (hover, completion) runs off the protocol's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.thread_pool, work)

    def point(self, document: Document, position: lsp.Position) -> tuple[int, int]:
        lines = document.text.splitlines(keepends=True) or [""]
        return position_to_point(position, lines, self.workspace.position_codec)

    def location(self, span: Span, sources: dict) -> lsp.Location:
        text = next((t for f, t in sources.items() if same_file(f, span.file)), "")
        return lsp.Location(uri=path_to_uri(span.file),
                            range=span_to_range(span, text.splitlines(keepends=True), self.workspace.position_codec))


def guarded(handler: Callable) -> Callable:
    """Log whatever a handler raises and answer None (no result): the server stays up."""
    @functools.wraps(handler)
    async def run(ls: KdlangServer, params: Any) -> Any:
        try:
            return await handler(ls, params)
        except asyncio.CancelledError:
            raise
        except Exception:
            ls.log(f"kdlang: internal error in {handler.__name__}:\n{traceback.format_exc()}")
            return None
    return run


def make_server(settings: Settings | None = None) -> KdlangServer:
    server = KdlangServer(settings)

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: KdlangServer, params: lsp.InitializeParams) -> None:
        ls.settings.update(params.initialization_options)

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: KdlangServer, params: Any) -> None:
        ls.checker.shutdown()

    # ---- documents ------------------------------------------------------------------------------
    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    @guarded
    async def did_open(ls: KdlangServer, params: lsp.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        ls.checker.opened(ls.documents.open(item.uri, item.text, item.version))

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    @guarded
    async def did_change(ls: KdlangServer, params: lsp.DidChangeTextDocumentParams) -> None:
        edited = ls.workspace.get_text_document(params.text_document.uri)  # pygls applied the changes
        ls.checker.changed(ls.documents.open(edited.uri, edited.source, params.text_document.version))

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    @guarded
    async def did_save(ls: KdlangServer, params: lsp.DidSaveTextDocumentParams) -> None:
        document = ls.document(params.text_document.uri)
        if document is not None:
            ls.checker.saved(document)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    @guarded
    async def did_close(ls: KdlangServer, params: lsp.DidCloseTextDocumentParams) -> None:
        document = ls.documents.close(params.text_document.uri)
        if document is not None:
            ls.checker.closed(document)
        ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))

    # ---- navigation -----------------------------------------------------------------------------
    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    @guarded
    async def definition(ls: KdlangServer, params: lsp.DefinitionParams) -> lsp.Location | None:
        got = await ls.analysed(params.text_document.uri)
        if got is None:
            return None
        document, found = got
        line, col = ls.point(document, params.position)
        here = navigation.at(found.occurrences, found.file, line, col)
        if here is not None:
            declared = navigation.declaration(found.occurrences, here.key)
            return ls.location(declared.span, found.checked.sources) if declared is not None else None
        root = found.checked.program.root if found.checked.program is not None else None
        target = navigation.use_at(root, line, col) if root is not None else None
        if target is None:
            return None
        start = lsp.Position(line=0, character=0)
        return lsp.Location(uri=path_to_uri(target), range=lsp.Range(start=start, end=start))

    @server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
    @guarded
    async def references(ls: KdlangServer, params: lsp.ReferenceParams) -> list[lsp.Location] | None:
        got = await ls.analysed(params.text_document.uri)
        if got is None:
            return None
        document, found = got
        here = navigation.at(found.occurrences, found.file, *ls.point(document, params.position))
        if here is None:
            return None
        return [ls.location(o.span, found.checked.sources) for o in navigation.references(
            found.occurrences, here.key, include_declaration=params.context.include_declaration)]

    # ---- hover and completion -------------------------------------------------------------------
    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    @guarded
    async def on_hover(ls: KdlangServer, params: lsp.HoverParams) -> lsp.Hover | None:
        got = await ls.analysed(params.text_document.uri)
        if got is None:
            return None
        document, found = got
        line, col = ls.point(document, params.position)
        answer = await ls.in_thread(lambda: hover.hover(found, line, col))
        if answer is None:
            return None
        return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=answer.markdown),
                         range=ls.location(answer.span, found.checked.sources).range)

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=[".", "(", ",", " "]))
    @guarded
    async def on_completion(ls: KdlangServer, params: lsp.CompletionParams) -> lsp.CompletionList | None:
        document = ls.document(params.text_document.uri)
        if document is None:
            return None
        found = await ls.analysis(document)
        lines = document.text.splitlines(keepends=True)
        line_text = lines[params.position.line].rstrip("\r\n") if params.position.line < len(lines) else ""
        line, col = ls.point(document, params.position)
        before = "".join(lines[: line - 1]) + line_text[: col - 1]
        candidates = await ls.in_thread(lambda: completion.complete(before, found))
        codec = ls.workspace.position_codec
        items = []
        for rank, candidate in enumerate(candidates):
            item = lsp.CompletionItem(label=candidate.label, kind=candidate.kind, detail=candidate.detail or None,
                                      sort_text=f"{rank:05d}")
            if candidate.documentation:
                item.documentation = lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=candidate.documentation)
            if candidate.replace_from is not None:
                start = lsp.Position(line=params.position.line,
                                     character=codec.client_num_units(line_text[: candidate.replace_from]))
                item.text_edit = lsp.TextEdit(range=lsp.Range(start=start, end=params.position), new_text=candidate.label)
            items.append(item)
        return lsp.CompletionList(is_incomplete=False, items=items)

    # ---- formatting and outline ------------------------------------------------------------------
    @server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
    @guarded
    async def on_formatting(ls: KdlangServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit] | None:
        document = ls.document(params.text_document.uri)
        if document is None:
            return None
        return formatting.formatting_edits(document.text, document.file, ls.workspace.position_codec)

    @server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @guarded
    async def on_symbols(ls: KdlangServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol] | None:
        document = ls.document(params.text_document.uri)
        if document is None:
            return None
        await ls.checker.settled(document, "syntax")
        recipe = _current_recipe(document)
        if recipe is None:  # not parsed on its own (the check parses it when it runs at once)
            await ls.checker.settled(document, "check")
            recipe = _current_recipe(document)
        if recipe is None:
            return None
        lines = document.text.splitlines(keepends=True)
        codec = ls.workspace.position_codec
        return outline.document_symbols(recipe, lambda span: span_to_range(span, lines, codec))

    return server


def _current_recipe(document: Document) -> ast.Recipe | None:
    """The document's own AST for the text the editor shows, from its parse or its check."""
    parsed = document.current(document.parsed)
    if parsed is not None:
        return parsed.recipe
    result = document.current(document.checked) or document.current(document.shaped)
    program = result.checked.program if result is not None else None
    return program.root if program is not None else None


def serve(settings: Settings | None = None) -> None:
    """Talk the protocol on standard input and output until the client says exit. Anything else
    that would write to standard output (a stray print, a library's notice) goes to standard error,
    so it can never break a message."""
    protocol_out = sys.stdout.buffer
    sys.stdout = sys.stderr
    make_server(settings).start_io(sys.stdin.buffer, protocol_out)
