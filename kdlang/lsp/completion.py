"""Completion: what may be written at the cursor, read off the text before it.

While a line is being typed the recipe rarely parses, so the context comes from the text itself
(comments and strings blanked out): the statement's first word, the innermost call still open and
what precedes the cursor in it. The candidates come from the checker's symbol table (of the latest
check) and the library registries:

- after `tap NAME = MODEL.`: that model's layers (the `kdlang taps` rows), with their shapes;
- after `zoo.`, `tv.`, `timm.` or a plugin's namespace: its models;
- inside a call, where a keyword may go: the keywords it takes with their defaults;
- after `optimizer`, `lr`, `data`, `model NAME =`, `branch ... =`: the library's names of that kind;
- after `train`, `evaluate`, `losses`, `on`, `mirrors`, `from stage`: declared names of the kind that fits;
- at the start of a statement or stage item: the keywords that may start one;
- elsewhere in an expression: declared names (a stage's own first), losses and schedule functions.
"""

from __future__ import annotations

import re
from typing import Iterable

import attrs
from lsprotocol import types as lsp

from kdlang.graph.symbols import BUILTINS, Decl
from kdlang.library import catalog, extensions
from kdlang.library.optimizers import LR_SCHEDULES, OPTIMIZERS
from kdlang.library.signatures import COMBINATORS, REDUCERS
from kdlang.lsp import library_docs
from kdlang.lsp.analysis import Analysis
from kdlang.syntax import grammar

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_BLANK = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*')  # strings and comments (a tap's `#k` is handled first)
_TAP_LAYER = re.compile(rf"^\s*tap\s+{_IDENT}\s*=\s*({_IDENT})\.([A-Za-z0-9_.#]*)$")
_NAMESPACE = re.compile(rf"(?<![A-Za-z0-9_.])({_IDENT})\.({_IDENT})?$")
_PARTIAL = re.compile(rf"{_IDENT}$")
_TRAINABLE = ("model", "granularity", "branch")


@attrs.frozen
class Candidate:
    """One completion, before it becomes an LSP item."""

    label: str
    kind: lsp.CompletionItemKind
    detail: str = ""
    documentation: str = ""
    replace_from: int | None = None  # 0-based column where the replaced text starts, when not the word


def complete(text_before: str, analysis: Analysis | None) -> list[Candidate]:
    """The candidates for a cursor preceded by `text_before` (the document from its start)."""
    line = text_before.rsplit("\n", 1)[-1]
    tap = _TAP_LAYER.match(line)
    if tap is not None:
        return _layers(analysis, tap.group(1), len(line) - len(tap.group(2)))
    code = _BLANK.sub(lambda m: " " * len(m.group()), text_before)
    line_code = code.rsplit("\n", 1)[-1]
    namespace = _NAMESPACE.search(line_code)
    if namespace is not None and namespace.group(1) in (*catalog.MODEL_PREFIXES, *extensions.namespaces()):
        return _models_in(namespace.group(1))
    opened = _open_call(code)
    if opened is not None:
        return _in_call(analysis, code, opened)
    partial = _PARTIAL.search(line_code)
    return _in_statement(analysis, code, line_code[: partial.start()] if partial else line_code)


# ---- inside a call ----------------------------------------------------------------------------


def _open_call(code: str) -> int | None:
    """The offset of the innermost `(` not yet closed before the cursor, in the current statement."""
    depth = 0
    for offset in range(len(code) - 1, -1, -1):
        char = code[offset]
        if char == ")":
            depth += 1
        elif char == "(":
            if depth == 0:
                return offset
            depth -= 1
        elif char in "{}":
            return None
    return None


def _in_call(analysis: Analysis | None, code: str, opened: int) -> list[Candidate]:
    callee_name = re.search(rf"({_IDENT}(?:\.{_IDENT})*)\s*$", code[:opened])
    line_start = code.rfind("\n", 0, opened) + 1
    first_word = _first_word(code[line_start:])
    inside = code[opened + 1:]
    if first_word == "stage" and re.fullmatch(rf"\s*stage\s+{_IDENT}\s*", code[line_start:opened]):
        callee = library_docs.statement_keywords("stage")
    elif first_word == "runtime":
        callee = library_docs.statement_keywords("runtime")
    else:
        callee = library_docs.callee(callee_name.group(1), first_word) if callee_name is not None else None
    out: list[Candidate] = []
    at_keyword = re.search(rf"(^|,)\s*({_IDENT})?$", inside) is not None  # not after `=`: a value goes there
    if at_keyword and callee is not None:
        given = set(re.findall(rf"({_IDENT})\s*=(?!=)", inside))
        out += [Candidate(f"{key}=", lsp.CompletionItemKind.Property, f"default {library_docs.value_text(default)}")
                for key, default in callee.keywords.items() if key not in given]
    if first_word in ("loss", "excite", "schedule"):  # an expression: names and functions
        out += _expression(analysis, code)
    return out


def _first_word(line: str) -> str:
    found = re.match(rf"\s*({_IDENT})", line)
    return found.group(1) if found else ""


# ---- statements -------------------------------------------------------------------------------


def _in_statement(analysis: Analysis | None, code: str, before: str) -> list[Candidate]:
    in_stage = code.count("{") > code.count("}") and _block_word(code) == "stage"
    words = before.split()
    if not words:
        keywords = grammar.stage_keywords() if in_stage else grammar.statement_keywords()
        return [Candidate(k, lsp.CompletionItemKind.Keyword) for k in sorted(keywords)]
    last, first = words[-1], words[0]
    if first == "optimizer" and len(words) == 1:
        return _signatures(OPTIMIZERS, "optimizer")
    if first == "lr" and len(words) == 1:
        return _signatures(LR_SCHEDULES, "lr schedule")
    if first == "data" and (len(words) == 1 or last == "="):
        from kdlang.library import datasets

        return [Candidate(n, lsp.CompletionItemKind.Module, "data set") for n in datasets.names()]
    if first == "model" and last == "=":
        return _model_names()
    if first == "branch" and last == "=":
        return _signatures(catalog.BRANCHES, "branch")
    if first == "tap" and last == "=":
        return _declared(analysis, ("model",))
    if first in ("train", "evaluate"):
        return _declared(analysis, _TRAINABLE)
    if first == "losses":
        return _declared(analysis, ("loss",), top_level_only=True)
    if last == "on" and first in ("granularity", "branch"):
        return _declared(analysis, ("tap",))
    if last == "mirrors":
        return _declared(analysis, ("granularity",))
    if last == "stage" and len(words) >= 2 and words[-2] == "from":
        return _declared(analysis, ("stage",))
    if first in ("loss", "excite", "schedule") and "=" in words:
        return _expression(analysis, code)
    return []


def _block_word(code: str) -> str:
    """The first word of the statement whose `{` block the cursor is in."""
    depth = 0
    for offset in range(len(code) - 1, -1, -1):
        if code[offset] == "}":
            depth += 1
        elif code[offset] == "{":
            if depth == 0:
                line_start = code.rfind("\n", 0, offset) + 1
                found = re.match(rf"\s*({_IDENT})", code[line_start:offset])
                return found.group(1) if found else ""
            depth -= 1
    return ""


# ---- candidates -------------------------------------------------------------------------------


def _expression(analysis: Analysis | None, code: str) -> list[Candidate]:
    stage = _stage_name(code)
    out = _declared(analysis, ("tap", "excite", "loss", "schedule", "granularity", "branch"), stage=stage)
    out += [Candidate(name, lsp.CompletionItemKind.Variable, f"the batch's {what}") for name, what in BUILTINS.items()]
    for name in catalog.loss_names():
        callee = library_docs.loss(name)
        out.append(Candidate(name, lsp.CompletionItemKind.Function, f"loss ({library_docs.keywords_text(callee.keywords)})",
                             callee.doc))
    out += _signatures(catalog.schedule_functions(), "schedule")
    out += [Candidate(name, lsp.CompletionItemKind.Function, "combinator",
                      (COMBINATORS.get(name) or REDUCERS[name]).doc) for name in sorted({*COMBINATORS, *REDUCERS})]
    return out


def _stage_name(code: str) -> str | None:
    if code.count("{") <= code.count("}"):
        return None
    found = list(re.finditer(rf"(?m)^\s*stage\s+({_IDENT})", code))
    return found[-1].group(1) if found else None


def _declared(analysis: Analysis | None, kinds: Iterable[str], *, stage: str | None = None,
              top_level_only: bool = False) -> list[Candidate]:
    if analysis is None:
        return []
    wanted = set(kinds)
    out = []
    for decl in analysis.symbols.decls.values():
        if decl.kind not in wanted or (decl.scope and (top_level_only or decl.scope != stage)):
            continue
        out.append(Candidate(decl.name, lsp.CompletionItemKind.Variable, _describe(decl)))
    return out


def _describe(decl: Decl) -> str:
    from kdlang.syntax.formatter import format_statement

    try:
        return format_statement(decl.node) if decl.kind != "stage" else f"stage {decl.name}"
    except TypeError:
        return decl.kind


def _signatures(table: dict, kind: str) -> list[Candidate]:
    return [Candidate(name, lsp.CompletionItemKind.Function, kind, signature.doc) for name, signature in table.items()]


def _model_names() -> list[Candidate]:
    out = _models_in("zoo", qualified=True)
    out += [Candidate(f"{prefix}.", lsp.CompletionItemKind.Module, "model namespace")
            for prefix in ("tv", "timm", *extensions.namespaces())]
    return out


def _models_in(namespace: str, qualified: bool = False) -> list[Candidate]:
    from kdlang.library import models

    if namespace == "zoo":
        names = models.names()
    elif namespace in ("tv", "timm"):
        names = [n.split(".", 1)[1] for n in models.names(include_torchvision=namespace == "tv",
                                                             include_timm=namespace == "timm")
                 if n.startswith(namespace + ".")]
    else:
        names = [n.split(".", 1)[1] for n in models.plugin_names() if n.startswith(namespace + ".")]
    return [Candidate(f"{namespace}.{n}" if qualified else n, lsp.CompletionItemKind.Module, f"{namespace} model")
            for n in names]


def _layers(analysis: Analysis | None, model: str, start: int) -> list[Candidate]:
    if analysis is None:
        return []
    decl = analysis.symbols.lookup(model)
    if decl is None or decl.kind != "model":
        return []
    built = analysis.model_taps.for_declaration(decl.node, analysis.symbols)
    if built is None:
        return []
    return [Candidate(tap.name, lsp.CompletionItemKind.Field,
                      f"{'x'.join(map(str, tap.shape)) or 'scalar'}  {tap.kind}"
                      + (f"  (runs {tap.calls}x: pick one with #k)" if tap.calls > 1 else ""),
                      replace_from=start)
            for tap in built.taps]
