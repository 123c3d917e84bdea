"""`kdlang lsp` over its protocol: a real `python -m kdlang lsp` process driven by pygls's client.

Each test opens documents and asks what an editor asks (diagnostics, hover, definition,
references, completion, formatting, symbols), checking the answers and their exact positions on
`recipes/quickstart.kd` and on a CIFAR-100 recipe that `use`s fragments. Positions in the tests
are 0-based lines and UTF-16 columns, as LSP has them. One server serves the whole file.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pygls")
from lsprotocol import types as lsp  # noqa: E402
from pygls.lsp.client import LanguageClient  # noqa: E402

from kdlang.syntax.formatter import format_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.kd"
MAS_KD = ROOT / "recipes" / "cifar100" / "resnet56-resnet20" / "mas_kd.kd"
FRAGMENTS = ROOT / "recipes" / "cifar100" / "fragments"
WAIT = 60.0  # seconds; the first check imports torch in the server


class Session:
    """The server process and a pygls client whose event loop runs in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = LanguageClient("kdlang-tests", "1")
        self.published: dict[str, list[lsp.PublishDiagnosticsParams]] = {}
        self.logs: list[str] = []
        self.versions: dict[str, int] = {}

        @self.client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def diagnostics(params: lsp.PublishDiagnosticsParams) -> None:
            self.published.setdefault(params.uri, []).append(params)

        @self.client.feature(lsp.WINDOW_LOG_MESSAGE)
        def log(params: lsp.LogMessageParams) -> None:
            self.logs.append(params.message)

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.run(self.client.start_io(sys.executable, "-m", "kdlang", "lsp", "--shape-delay", "0.2", cwd=str(ROOT),
                                      env=env))
        result = self.run(self.client.initialize_async(lsp.InitializeParams(
            capabilities=lsp.ClientCapabilities(), initialization_options={"checkDelay": 0.1})))
        self.capabilities = result.capabilities
        self.client.initialized(lsp.InitializedParams())

    def run(self, coroutine, timeout: float = WAIT):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.client.shutdown_async(None))
        self.client.exit(None)
        self.run(self.client.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    # ---- documents ----------------------------------------------------------------------------
    def open(self, path: Path, text: str | None = None) -> str:
        uri = path.resolve().as_uri()
        self.versions[uri] = 1
        self.published.pop(uri, None)
        self.client.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(
            uri=uri, language_id="kdlang", version=1, text=path.read_text() if text is None else text)))
        return uri

    def close_all(self) -> None:
        """Close every open document: their checks still waiting are dropped."""
        for uri in self.versions:
            self.client.text_document_did_close(lsp.DidCloseTextDocumentParams(lsp.TextDocumentIdentifier(uri)))
        self.versions.clear()

    def change(self, uri: str, text: str) -> int:
        self.versions[uri] += 1
        self.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
            content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=text)]))
        return self.versions[uri]

    def diagnostics(self, uri: str, until=lambda found: True, timeout: float = WAIT) -> list[lsp.Diagnostic]:
        """The diagnostics last published for the document's current version once `until` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [p for p in self.published.get(uri, ()) if p.version == self.versions[uri]]
            if found and until(list(found[-1].diagnostics)):
                return list(found[-1].diagnostics)
            time.sleep(0.02)
        raise AssertionError(f"no diagnostics as expected for {uri}; published: {self.published.get(uri)}")

    # ---- requests -----------------------------------------------------------------------------
    def hover(self, uri: str, line: int, character: int) -> lsp.Hover | None:
        return self.run(self.client.text_document_hover_async(lsp.HoverParams(
            lsp.TextDocumentIdentifier(uri), lsp.Position(line, character))))

    def definition(self, uri: str, line: int, character: int):
        return self.run(self.client.text_document_definition_async(lsp.DefinitionParams(
            lsp.TextDocumentIdentifier(uri), lsp.Position(line, character))))

    def references(self, uri: str, line: int, character: int) -> list[lsp.Location]:
        return self.run(self.client.text_document_references_async(lsp.ReferenceParams(
            context=lsp.ReferenceContext(include_declaration=True), text_document=lsp.TextDocumentIdentifier(uri),
            position=lsp.Position(line, character))))

    def completion(self, uri: str, line: int, character: int) -> list[lsp.CompletionItem]:
        found = self.run(self.client.text_document_completion_async(lsp.CompletionParams(
            lsp.TextDocumentIdentifier(uri), lsp.Position(line, character))))
        return found.items

    def formatting(self, uri: str) -> list[lsp.TextEdit] | None:
        return self.run(self.client.text_document_formatting_async(lsp.DocumentFormattingParams(
            lsp.TextDocumentIdentifier(uri), lsp.FormattingOptions(tab_size=2, insert_spaces=True))))

    def symbols(self, uri: str) -> list[lsp.DocumentSymbol]:
        return self.run(self.client.text_document_document_symbol_async(lsp.DocumentSymbolParams(
            lsp.TextDocumentIdentifier(uri))))


@pytest.fixture(scope="module")
def server():
    session = Session()
    yield session
    session.close()


@pytest.fixture(autouse=True)
def fresh(request):
    """Each test opens its own documents (an open document's checks would slow the next test)."""
    yield
    if "server" in request.fixturenames:
        session = request.getfixturevalue("server")
        session.close_all()
        assert not [message for message in session.logs if "internal error" in message or "failed" in message]


@pytest.fixture
def scratch(tmp_path):
    """A copy of the quickstart in a file of its own, for tests that edit it."""
    path = tmp_path / "edited.kd"
    path.write_text(QUICKSTART.read_text())
    return path


def span(found) -> tuple[int, int, int, int]:
    r = found.range
    return r.start.line, r.start.character, r.end.line, r.end.character


def position(text: str, needle: str, offset: int = 0) -> tuple[int, int]:
    """0-based (line, character) of the first `needle` in `text`, plus `offset` characters."""
    index = text.index(needle) + offset
    line = text.count("\n", 0, index)
    return line, index - (text.rfind("\n", 0, index) + 1)


def test_initialize_advertises_every_feature(server):
    caps = server.capabilities
    assert caps.hover_provider and caps.definition_provider and caps.references_provider
    assert caps.document_formatting_provider and caps.document_symbol_provider
    assert "." in caps.completion_provider.trigger_characters
    assert caps.position_encoding == lsp.PositionEncodingKind.Utf16


# ---- diagnostics ---------------------------------------------------------------------------------


def test_shape_pass_diagnostic_on_the_layer(server, scratch):
    """The shape pass (models built and traced) finds a layer the model does not have."""
    uri = server.open(scratch)
    broken = scratch.read_text().replace("tap s_feat   = student.pool", "tap s_feat   = student.pol")
    server.change(uri, broken)
    (problem,) = server.diagnostics(uri, until=bool)
    line, col = position(broken, "student.pol", len("student."))
    assert span(problem) == (line, col, line, col + len("pol"))
    assert "`pool`" in problem.message  # the hint names the layer meant


def test_clean_recipes_publish_no_diagnostics(server):
    assert server.diagnostics(server.open(QUICKSTART)) == []
    assert server.diagnostics(server.open(MAS_KD)) == []


def test_syntax_error_at_its_place_then_cleared(server, scratch):
    uri = server.open(scratch)
    assert server.diagnostics(uri) == []
    text = scratch.read_text()
    broken = text.replace("model student = zoo.cnn_small()", "model student = zoo.cnn_small(")
    server.change(uri, broken)
    (problem,) = server.diagnostics(uri, until=bool)
    # the parser stops at the next statement's first word: `control` on the line below
    line, col = position(broken, "model control", len("model "))
    assert span(problem) == (line, col, line, col + len("control"))
    assert problem.severity == lsp.DiagnosticSeverity.Error and problem.source == "kdlang"
    server.change(uri, text)
    assert server.diagnostics(uri, until=lambda found: found == []) == []


def test_unknown_name_at_its_place_with_hint_then_cleared(server, scratch):
    uri = server.open(scratch)
    text = scratch.read_text()
    broken = text.replace("loss kd    = kd(s_logits, target, T=4)", "loss kd    = kd(s_logitz, target, T=4)")
    server.change(uri, broken)
    (problem,) = server.diagnostics(uri, until=bool)
    line, col = position(broken, "s_logitz")
    assert span(problem) == (line, col, line, col + len("s_logitz"))
    assert "s_logitz" in problem.message and "did you mean `s_logits`" in problem.message
    server.change(uri, text)
    assert server.diagnostics(uri, until=lambda found: found == []) == []


def test_problem_inside_a_fragment_shows_on_its_use_line(server, tmp_path):
    fragment = tmp_path / "parts.kd"
    fragment.write_text("kdlang 1 fragment\ntap s_feat = student.pool\nloss extra = mse(s_feat, nowhere)\n")
    recipe = QUICKSTART.read_text().replace("tap s_feat   = student.pool\n", "")
    recipe += '\nuse "parts.kd"\n'
    uri = server.open(tmp_path / "main.kd", recipe)
    problems = server.diagnostics(uri, until=bool)
    assert all(p.message.startswith("parts.kd:") for p in problems)  # the recipe itself is sound
    unknown = next(p for p in problems if "nowhere" in p.message)
    line, _ = position(recipe, 'use "parts.kd"')
    assert span(unknown) == (line, 0, line, len('use "parts.kd"'))
    assert unknown.message.startswith("parts.kd:3:")
    (here,) = [r for r in unknown.related_information if r.location.uri == fragment.resolve().as_uri()]
    assert here.location.range.start == lsp.Position(2, len("loss extra = mse(s_feat, "))


def test_unsaved_fragment_edit_rechecks_the_recipe_using_it(server, tmp_path):
    fragment = tmp_path / "parts.kd"
    fragment.write_text("kdlang 1 fragment\ntap s_feat = student.pool\n")
    recipe = QUICKSTART.read_text().replace("tap s_feat   = student.pool\n", "")
    recipe += '\nuse "parts.kd"\n'
    uri = server.open(tmp_path / "main.kd", recipe)
    assert server.diagnostics(uri) == []
    fragment_uri = server.open(fragment)
    server.change(fragment_uri, "kdlang 1 fragment\ntap s_feat = studnt.pool\n")  # not saved: the disk is unchanged
    deadline = time.monotonic() + WAIT
    while not [p for p in server.published.get(uri, ()) if any("studnt" in d.message for d in p.diagnostics)]:
        assert time.monotonic() < deadline, server.published.get(uri)
        time.sleep(0.02)
    problems = [p for p in server.published[uri] if p.diagnostics][-1].diagnostics
    line, _ = position(recipe, 'use "parts.kd"')
    assert [d.range.start.line for d in problems if "studnt" in d.message] == [line]


def test_any_input_leaves_the_server_answering(server, tmp_path):
    uri = server.open(tmp_path / "junk.kd", "\x00\x01 ((((( \ud7ff model = = = \n" * 50)
    assert server.diagnostics(uri, until=bool)
    deep = "kdlang 1\nloss x = " + "-" * 400 + "1\n"
    server.change(uri, deep)
    assert server.diagnostics(uri, until=lambda found: any("nested" in d.message for d in found))
    assert server.hover(uri, 1000, 1000) is None
    assert server.completion(uri, 1, 9) is not None
    assert server.formatting(uri) is None  # no edit for a recipe that does not parse
    assert not [message for message in server.logs if "internal error" in message]


# ---- hover -----------------------------------------------------------------------------------------


def test_hover_tap_model_loss_and_keyword(server):
    uri = server.open(QUICKSTART)
    text = QUICKSTART.read_text()
    line, col = position(text, "tap t_feat", len("tap "))
    found = server.hover(uri, line, col + 2)
    assert "shape per sample: **2304**" in found.contents.value  # cnn_wide's pooled feature, 256x3x3
    assert span(found) == (line, col, line, col + len("t_feat"))
    found = server.hover(uri, *position(text, "model teacher", len("model ")))
    assert "parameters: 393,162" in found.contents.value and "1x28x28" in found.contents.value
    line, col = position(text, "kd(s_logits, target")
    found = server.hover(uri, line, col)
    assert "T^2" in found.contents.value and "`T=4.0`" in found.contents.value  # formula and default
    assert span(found) == (line, col, line, col + 2)
    found = server.hover(uri, *position(text, "momentum=0.9", 1))
    assert "`momentum` of optimizer `sgd`: default `0.0`" in found.contents.value
    found = server.hover(uri, *position(text, "loss levels", len("loss ")))  # a declared loss: what it calls
    assert "computed in stage `analyze`" in found.contents.value
    assert "- `kd`: Hinton KD" in found.contents.value and "`label_smoothing=0.0`" in found.contents.value


def test_hover_schedule_value_over_its_stage(server, tmp_path):
    text = QUICKSTART.read_text().replace("loss kd    = kd(s_logits, target, T=4)", "loss kd    = w * kd(s_logits, target, T=4)")
    text += "schedule w = linear(0 -> 1, epochs=0..2)\n"
    uri = server.open(tmp_path / "scheduled.kd", text)
    assert server.diagnostics(uri) == []
    found = server.hover(uri, *position(text, "schedule w", len("schedule ")))
    assert "over stage `distill` (2 epochs), by epoch: 0: 0, 0.5: 0.25, 1: 0.5, 1.5: 0.75, 2: 1" in found.contents.value


def test_hover_across_use_on_the_cifar_recipe(server):
    uri = server.open(MAS_KD)
    text = MAS_KD.read_text()
    found = server.hover(uri, *position(text, "train student, smg", len("train student, ")))
    assert "granularity smg on s_feat mirrors mg" in found.contents.value
    assert "level `fine`: `code=64`, `T=2`" in found.contents.value  # the mirrored levels
    found = server.hover(uri, *position(text, "train student", len("train ")))
    assert "zoo.resnet20" in found.contents.value and "parameters: 278,324" in found.contents.value


# ---- definition and references ----------------------------------------------------------------------


def test_definition_in_the_same_file(server):
    uri = server.open(QUICKSTART)
    text = QUICKSTART.read_text()
    found = server.definition(uri, *position(text, "mean(t_logits", len("mean(")))
    line, col = position(text, "tap t_logits", len("tap "))
    assert found.uri == uri and span(found) == (line, col, line, col + len("t_logits"))
    found = server.definition(uri, *position(text, "mg.fine.logits", len("mg.")))  # a level
    line, col = position(text, "level fine", len("level "))
    assert span(found) == (line, col, line, col + len("fine"))


def test_definition_across_use(server):
    uri = server.open(MAS_KD)
    text = MAS_KD.read_text()
    found = server.definition(uri, *position(text, "losses ce_mg_kd", len("losses ")))
    assert found.uri == (FRAGMENTS / "methods" / "kd.kd").resolve().as_uri()
    assert span(found) == (6, 5, 6, 5 + len("ce_mg_kd"))
    found = server.definition(uri, *position(text, "train student, smg", len("train student, ")))
    assert found.uri == (FRAGMENTS / "mas.kd").resolve().as_uri() and span(found) == (3, 12, 3, 15)
    found = server.definition(uri, *position(text, 'use "../common.kd"', 6))
    assert found.uri == (FRAGMENTS.parent / "common.kd").resolve().as_uri()


def test_references_in_the_file_and_across_use(server):
    uri = server.open(QUICKSTART)
    text = QUICKSTART.read_text()
    found = server.references(uri, *position(text, "tap t_logits", len("tap ")))
    lines = sorted(r.range.start.line for r in found)
    expected = sorted(i for i, row in enumerate(text.splitlines()) if "t_logits" in row)
    assert lines == expected  # the declaration, the teacher's loss, the levels' KD, the excitation
    uri = server.open(MAS_KD)
    found = server.references(uri, *position(MAS_KD.read_text(), "train student", len("train ")))
    pair = (FRAGMENTS / "pair_resnet56-resnet20.kd").resolve().as_uri()
    assert {r.uri for r in found} == {uri, pair}
    assert sum(r.uri == pair for r in found) == 1 + 11  # `model student` and its eleven taps


# ---- completion ----------------------------------------------------------------------------------------


def labels(items) -> list[str]:
    return [item.label for item in items]


def test_completion_of_names_losses_and_keywords(server, scratch):
    uri = server.open(scratch)
    server.diagnostics(uri)  # opened and checked, then edited: the last good check's names are offered
    text = scratch.read_text()
    typed = text.replace("loss kd    = kd(s_logits, target, T=4)", "loss kd    = kd(s_logits, ")
    server.change(uri, typed)
    line, col = position(typed, "kd(s_logits, ", len("kd(s_logits, "))
    items = server.completion(uri, line, col)
    by_label = {item.label: item for item in items}
    assert by_label["T="].detail == "default 4.0"
    assert {"target", "t_logits", "s_logits", "label", "kd", "dkd", "crd", "linear"} <= set(by_label)
    assert "levels" not in by_label  # another stage's own loss
    assert "T^2" in by_label["kd"].documentation.value


def test_completion_of_layer_names_in_a_tap(server, scratch):
    uri = server.open(scratch)
    typed = scratch.read_text() + "tap t_mid = teacher.lay"
    server.change(uri, typed)
    line = typed.count("\n")
    items = server.completion(uri, line, len("tap t_mid = teacher.lay"))
    by_label = {item.label: item for item in items}
    assert {"layer1", "layer2.0", "pool", "output"} <= set(by_label)
    assert by_label["layer2"].detail.startswith("128x7x7")
    edit = by_label["layer1.0"].text_edit  # replaces the dotted path typed so far
    assert span(edit) == (line, len("tap t_mid = teacher."), line, len("tap t_mid = teacher.lay"))


def test_completion_of_models_and_statement_keywords(server, scratch):
    uri = server.open(scratch)
    typed = scratch.read_text() + "model extra = zoo."
    server.change(uri, typed)
    items = server.completion(uri, typed.count("\n"), len("model extra = zoo."))
    assert {"resnet56", "wrn_40_2", "cnn_small"} <= set(labels(items))
    typed = scratch.read_text() + "\n"
    server.change(uri, typed)
    assert {"model", "tap", "stage", "loss"} <= set(labels(server.completion(uri, typed.count("\n"), 0)))


# ---- formatting and symbols ------------------------------------------------------------------------------


def test_formatting_through_kdlang_fmt(server, tmp_path):
    messy = "kdlang 1\ndata fashion_mnist( batch = 128 )\nmodel m=zoo.cnn_small()\ntap   t = m.output\n"
    uri = server.open(tmp_path / "messy.kd", messy)
    (edit,) = server.formatting(uri)
    assert edit.new_text == format_text(messy)
    assert (edit.range.start.line, edit.range.start.character) == (0, 0)
    assert (edit.range.end.line, edit.range.end.character) == (4, 0)
    assert list(server.formatting(server.open(QUICKSTART))) == []  # already canonical


def test_document_symbols_outline(server):
    uri = server.open(QUICKSTART)
    found = server.symbols(uri)
    names = [s.name for s in found]
    assert names[:4] == ["data", "teacher", "student", "control"]
    assert names[-2:] == ["report", "runtime"]
    distill = next(s for s in found if s.name == "distill")
    assert [c.name for c in distill.children] == ["target", "ce", "kd", "codes"]
    text = QUICKSTART.read_text()
    line, col = position(text, "stage distill", len("stage "))
    assert (distill.selection_range.start.line, distill.selection_range.start.character) == (line, col)
    mg = next(s for s in found if s.name == "mg")
    assert [c.name for c in mg.children] == ["fine", "coarse"]


def test_positions_count_utf16_units(server, tmp_path):
    """A character outside the BMP is two UTF-16 units: a name after it is where the editor has it."""
    text = 'kdlang 1\nrecipe "😀 KD"  model m = zoo.cnn_small()\n'
    uri = server.open(tmp_path / "emoji.kd", text)
    found = server.symbols(uri)
    (model,) = [s for s in found if s.name == "m"]
    # `recipe "` is 8 units, the emoji 2, ` KD"  model ` 12: `m` starts at unit 22
    assert model.selection_range.start == lsp.Position(1, 22)


# ---- every position, in process ---------------------------------------------------------------------


def test_features_answer_at_every_position_without_raising():
    """Hover, definition and completion everywhere in the quickstart, and completion after every
    prefix of it (a line being typed), from the same analysis a request reads: answers or None,
    never an exception (which the server would log as an internal error)."""
    from kdlang.lsp import analysis, completion, hover, navigation
    from kdlang.lsp.documents import Documents, Result, check_document
    from kdlang.lsp.model_taps import ModelTaps

    text = QUICKSTART.read_text()
    documents = Documents()
    document = documents.open(QUICKSTART.resolve().as_uri(), text, 1)
    document.checked = Result(1, check_document(document.file, text, {}, shapes=False, on_disk=True))
    found = analysis.of(document, ModelTaps())
    answered = 0
    for line, row in enumerate(text.splitlines(), start=1):
        for col in range(1, len(row) + 2):
            answered += hover.hover(found, line, col) is not None
            navigation.at(found.occurrences, found.file, line, col)
    assert answered > 300
    for end in range(0, len(text), 3):
        completion.complete(text[:end], found)
        completion.complete(text[:end], None)


def test_check_at_once_reports_syntax_errors_without_a_separate_parse():
    """With no check delay the check itself reports a syntax error (no parse step runs first), clears
    it when fixed, and the outline reads the check's AST."""
    from pygls.workspace import PositionCodec

    from kdlang.lsp import diagnostics
    from kdlang.lsp.checks import SYNTAX, Checker, Settings
    from kdlang.lsp.documents import Documents
    from kdlang.lsp.server import _current_recipe

    text = QUICKSTART.read_text()
    broken = text.replace("model student = zoo.cnn_small()", "model student = zoo.cnn_small(")
    shown: list = []

    async def edits() -> None:
        documents = Documents()
        checker = Checker(documents, Settings(check_delay=0.0, shapes=False),
                          lambda document: shown.append(diagnostics.current(document, PositionCodec())), print)
        uri = QUICKSTART.resolve().as_uri()
        for version, edited in enumerate((text, broken, text), start=1):
            document = documents.open(uri, edited, version)
            if version == 1:
                checker.opened(document)
            else:
                checker.changed(document)
            await checker.settled(document)
            assert SYNTAX not in document.tasks
            assert diagnostics.shows_syntax_error(document) == (edited is broken)
            assert (_current_recipe(document) is None) == (edited is broken)
        checker.shutdown()

    asyncio.run(edits())
    assert [len(found) for found in shown] == [0, 1, 0]
    line, col = position(broken, "model control", len("model "))
    assert span(shown[1][0]) == (line, col, line, col + len("control"))


# ---- the VS Code extension's TextMate grammar --------------------------------------------------------

TEXTMATE = ROOT / "editors" / "vscode" / "syntaxes" / "kd.tmLanguage.json"


def _alternatives(pattern: str) -> set[str]:
    """The words of a `\\b(a|b|c)\\b` pattern."""
    import re

    (group,) = re.findall(r"\\b\(([A-Za-z_|]+)\)\\b", pattern)
    return set(group.split("|"))


def test_textmate_keywords_are_the_grammars():
    import json

    from kdlang.syntax import grammar
    from kdlang.syntax.highlight import constant_keywords

    repository = json.loads(TEXTMATE.read_text())["repository"]
    keywords, constants = _alternatives(repository["keywords"]["match"]), _alternatives(repository["constants"]["match"])
    assert constants == set(constant_keywords())
    missing, extra = grammar.keywords() - constants - keywords, keywords - grammar.keywords()
    assert not missing and not extra, f"add {sorted(missing)} to / remove {sorted(extra)} from {TEXTMATE}"


def test_textmate_patterns_compile_and_the_extension_points_at_them():
    import json
    import re

    def patterns(node):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from ([value] if key in ("match", "begin", "end") else patterns(value))
        elif isinstance(node, list):
            for value in node:
                yield from patterns(value)

    grammar_json = json.loads(TEXTMATE.read_text())
    for pattern in patterns(grammar_json):
        re.compile(pattern)  # the syntax used is common to Python and Oniguruma: a typo fails here
    manifest = json.loads((TEXTMATE.parent.parent / "package.json").read_text())
    (contributed,) = manifest["contributes"]["grammars"]
    assert contributed["scopeName"] == grammar_json["scopeName"]
    assert (TEXTMATE.parent.parent / contributed["path"]).resolve() == TEXTMATE.resolve()
    assert manifest["contributes"]["languages"][0]["extensions"] == [".kd"]
