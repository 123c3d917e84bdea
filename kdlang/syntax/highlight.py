"""A Pygments lexer for `.kd` recipes, so the docs site, `kdlang report` and any Pygments user
highlight them.

Its keywords are read off the grammar (`kdlang.syntax.grammar`), never listed here, so a keyword
added to `kdlang.lark` is highlighted without touching this file. Registered under the
`pygments.lexers` entry point (pyproject.toml), which makes ```kd fences work in Markdown.

The language reserves keywords only where a statement or a stage item starts: `lr=0.1` inside a
call is an argument and `mg.levels` an attribute, so a keyword followed by `=` or after a `.` is a
name here too, as it is to the parser.
"""

from __future__ import annotations

import functools
from typing import Iterable

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import _TokenType, Comment, Keyword, Name, Number, Operator, Punctuation, String, Whitespace

from kdlang.syntax import grammar

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


@functools.cache
def constant_keywords() -> frozenset[str]:
    """The keywords that are a whole value on their own (`true`, `false`, `none`): the grammar's
    atoms made of one keyword terminal."""
    terminals = grammar.keyword_terminals()
    return frozenset(
        terminals[rule.expansion[0].name]
        for rule in grammar.lark_parser().rules
        if rule.origin.name == "atom" and len(rule.expansion) == 1 and rule.expansion[0].name in terminals
    )


# What may follow a declared name, by the grammar symbol that follows it there.
_FOLLOWERS = {"EQUAL": r"\s*=", "ON": r"\s+on\b", "LBRACE": r"\s*\{", "arguments": r"\s*\(",
              "kwargs": rf"\s+{_NAME}\s*="}


@functools.cache
def declaring_keywords() -> dict[str, str]:
    """Keyword -> a lookahead for what follows the name it declares (`model teacher =`, `stage
    distill(`, `level fine code=`, `granularity mg on`), read off the grammar: a rule that goes on
    `KEYWORD name` and then `=`, `on`, arguments, a block or keyword arguments. Name lists (`train
    a, b`) declare nothing, nor does the report line, whose names (`top1`, `best`) are metrics."""
    parser = grammar.lark_parser()
    terminals = grammar.keyword_terminals()
    firsts: dict = {}
    for rule in parser.rules:
        if rule.origin.name.startswith("__") and rule.expansion:
            firsts.setdefault(rule.origin.name, set()).add(rule.expansion[0].name)
    report_rules = _reachable(parser.rules, "report")
    follows: dict = {}
    for rule in parser.rules:
        e = rule.expansion
        if len(e) < 2 or e[0].name not in terminals or e[1].name != "name" or rule.origin.name in report_rules:
            continue
        after = e[2].name if len(e) > 2 else None
        if after in firsts:
            after = None if "COMMA" in firsts[after] else "kwargs"  # `a, b` lists; `code=8 T=2` arguments
        follows.setdefault(terminals[e[0].name], set()).add(after)
    return {
        word: "" if None in after else "(?=" + "|".join(sorted(_FOLLOWERS[a] for a in after)) + ")"
        for word, after in follows.items() if after - {None}
    }


def _reachable(rules: list, start: str) -> set[str]:
    """The rules `start` can expand into, itself included."""
    children: dict = {}
    for rule in rules:
        children.setdefault(rule.origin.name, set()).update(s.name for s in rule.expansion if not s.is_term)
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(children.get(name, ()))
    return seen


def _keyword_rule(found: Iterable[str], token: _TokenType) -> tuple:
    """A rule matching the whole words in `found` where the parser would read them as keywords."""
    return words(sorted(found, key=lambda w: (-len(w), w)), prefix=r"\b", suffix=r"\b(?!\s*=[^=])"), token


class KdlangLexer(RegexLexer):
    """kdlang recipes (`.kd` files); the language is described in docs/language.md."""

    name = "kdlang"
    aliases = ["kd", "kdlang", "kd-error", "kd-warning"]  # the docs' error and warning examples too
    filenames = ["*.kd"]
    mimetypes = ["text/x-kdlang"]

    tokens = {
        "root": [
            (r"\s+", Whitespace),
            # tap t = teacher.layer1.0.relu#2: `#2` picks the second call, it starts no comment
            (rf"\b(tap)(\s+)({_NAME})(\s*)(=)(\s*)({_NAME}(?:\.[A-Za-z0-9_]+)+)(#[0-9]+)?",
             bygroups(Keyword, Whitespace, Name.Variable, Whitespace, Operator, Whitespace, Name, Number.Integer)),
            (r"#[^\n]*", Comment.Single),
            (r'"([^"\\\n]|\\.)*"', String.Double),
            (r"[0-9]+(\.[0-9]+)?[eE][+-]?[0-9]+|[0-9]+\.[0-9]+(?!\.)", Number.Float),
            (r"[0-9]+", Number.Integer),
            (r"->|\.\.", Operator),
            (rf"(\.)({_NAME}|[0-9]+)", bygroups(Punctuation, Name.Attribute)),
            # a declaration: `model teacher = ...`, `stage distill(...)`, `level fine ...`; not the
            # data set of `data fashion_mnist(batch=128)`
            *((rf"\b({word})(\s+)({_NAME})\b{lookahead}", bygroups(Keyword, Whitespace, Name.Variable))
              for word, lookahead in sorted(declaring_keywords().items())),
            _keyword_rule(constant_keywords(), Keyword.Constant),
            _keyword_rule(grammar.keywords() - constant_keywords(), Keyword),
            (rf"{_NAME}(?=\s*=[^=])", Name.Attribute),
            (_NAME, Name),
            (r"[+\-*/=]", Operator),
            (r"[()\[\]{},:]", Punctuation),
        ],
    }
