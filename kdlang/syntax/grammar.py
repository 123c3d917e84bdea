"""The grammar file, compiled once by lark, and the words it reserves.

This is the only module that talks to lark's parser: `parse_tree` runs it on one text, and the
keyword sets are read off its terminals and rules, so a keyword is declared in one place only, the
grammar. It imports nothing else from kdlang but the cache folder's place, so the error explainer and
the parser can both use it.

Each parse gets its own `_Scan` (the text and the comments met), which the lexer's hooks find
through a context variable: two threads parsing at once never see each other's text or comments.
"""

from __future__ import annotations

import contextvars
import functools
import re
import threading
from collections import defaultdict
from importlib import resources

import lark
from lark.lexer import PatternStr

from kdlang import user_cache


@functools.cache
def grammar_text() -> str:
    """The grammar shipped inside the package (a link to `grammar/kdlang.lark` in a checkout)."""
    return resources.files("kdlang").joinpath("grammar/kdlang.lark").read_text()


class GluedKeyword(Exception):
    """A keyword immediately followed by name characters (`modelteacher`): not a keyword at all."""

    def __init__(self, token: lark.Token):
        super().__init__(str(token))
        self.token = token


class _Scan:
    """What the lexer keeps for one parse: the text (to look past a keyword) and the comments."""

    __slots__ = ("text", "comments")

    def __init__(self, text: str):
        self.text = text
        self.comments: list[lark.Token] = []


_SCAN: contextvars.ContextVar[_Scan] = contextvars.ContextVar("kdlang_scan")
# lark builds each contextual lexer state's scanner on first use, and that build is not safe to run
# in two threads at once (a callback can go missing); parses take turns inside lark.
_LARK_LOCK = threading.Lock()


def _keep_comment(token: lark.Token) -> lark.Token:
    """lark's callback for the ignored COMMENT terminal: the formatter needs every comment back."""
    _SCAN.get().comments.append(token)
    return token


class _KeywordGuard:
    """lark's post-lexer: refuses a keyword glued to the name characters after it (`modelteacher`).

    The contextual lexer reads `model` out of `modelteacher` where only keywords may come; this
    check sees each token as the lexer hands it over, before the parser does.
    """

    always_accept = ()

    def process(self, stream):
        keywords, text = keyword_terminals(), _SCAN.get().text
        for token in stream:
            end = token.end_pos
            if token.type in keywords and end < len(text) and (text[end].isalnum() or text[end] == "_"):
                raise GluedKeyword(token)
            yield token


@functools.cache
def lark_parser() -> lark.Lark:
    """The grammar compiled once: LALR with a contextual lexer, one pass, linear in the text.

    Compiling the LALR tables takes about 0.4 s, a third of a cold `kdlang check`; lark keeps them
    in `parser_cache()` and reloads them in milliseconds while the grammar, the options, lark and
    Python are the same (its key hashes all four). A cache file that is damaged or half written
    (two processes at once) is recompiled and written again.
    """
    return lark.Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=False,
        lexer_callbacks={"COMMENT": _keep_comment},
        postlex=_KeywordGuard(),
        cache=parser_cache() or False,
    )


def parser_cache() -> str | None:
    """Where the compiled grammar is kept: a file in the user's own cache folder (lark's cache is a
    pickle: never in a shared temporary folder); None when there is no such folder, or
    `KDLANG_NO_CACHE` is set."""
    folder = user_cache.folder()
    return str(folder / f"grammar-lark{lark.__version__}.cache") if folder is not None else None


def parse_tree(text: str) -> tuple[lark.Tree, list[lark.Token]]:
    """lark's tree for `text` and the comment tokens in it, in order.

    Raises lark's `UnexpectedInput` for text that does not parse, `GluedKeyword` for `modelteacher`.
    """
    scan = _Scan(text)
    reset = _SCAN.set(scan)
    try:
        with _LARK_LOCK:
            tree = lark_parser().parse(text)
    finally:
        _SCAN.reset(reset)
    return tree, scan.comments


# ---- the words the grammar reserves ---------------------------------------------------------

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@functools.cache
def keyword_terminals() -> dict[str, str]:
    """Terminal name -> keyword, for every terminal that is a literal word (`"model"` is MODEL)."""
    return {
        terminal.name: terminal.pattern.value
        for terminal in lark_parser().terminals
        if isinstance(terminal.pattern, PatternStr) and _WORD.fullmatch(terminal.pattern.value)
    }


@functools.cache
def keywords() -> frozenset[str]:
    """Every reserved word of the language."""
    return frozenset(keyword_terminals().values())


@functools.cache
def statement_keywords() -> frozenset[str]:
    """The words that start a top-level statement, `kdlang` (the version line) included."""
    return _leading_keywords("version", "statement")


@functools.cache
def stage_keywords() -> frozenset[str]:
    """The words that start an item inside `stage NAME { ... }` (`loss` and `excite` start both)."""
    return _leading_keywords("stage_item")


def _leading_keywords(*rules: str) -> frozenset[str]:
    """The keywords that can come first in `rules`, following rules that start with another rule
    (`statement: model | ...`, `model: "model" name ...`)."""
    expansions = defaultdict(list)
    for compiled in lark_parser().rules:
        expansions[compiled.origin.name].append(compiled.expansion)
    words = keyword_terminals()
    found: set[str] = set()
    todo, seen = list(rules), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for first in (expansion[0] for expansion in expansions[name] if expansion):
            if not first.is_term:
                todo.append(first.name)
            elif first.name in words:
                found.add(words[first.name])
    return frozenset(found)
