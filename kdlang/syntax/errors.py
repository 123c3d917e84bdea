"""Turn lark's parse errors into friendly, positioned diagnostics.

Common slips are recognised by example (lark's `match_examples`: a bad input that fails in the same
parser state with the same token gets the same message), the rest by what the parser expected.
The examples are run through the parse function the parser passes in (as lark's `match_examples`
takes one), so this module never imports the parser.
"""

from __future__ import annotations

import difflib
import functools
import re

from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from kdlang.diagnostics import Diagnostic, Note, error
from kdlang.syntax import grammar
from kdlang.syntax.ast import NOWHERE, Span

_CLOSERS = {"(": ")", "[": "]", "{": "}"}


class SyntaxProblem(Exception):
    """A recipe that does not parse; `diagnostic` says where and why."""

    def __init__(self, message: str, span: Span | None, *, hint=None, notes=()):
        self.diagnostic: Diagnostic = error(message, span or NOWHERE, hint=hint, notes=notes)
        super().__init__(message)


# Labelled bad inputs. Each class of slip is learnt from its examples, not from parser internals.
_EXAMPLES = {
    "missing '=' in a declaration": [
        "model teacher zoo.cnn_wide()",
        "tap t teacher.pool",
        "loss kd kd(a, b)",
        "schedule s linear(0 -> 1)",
        "excite e mean(a, b)",
        "branch b on t linear()",
    ],
    "missing ',' between arguments": [
        "loss x = kd(a b)",
        "model m = zoo.x(classes=10 in_channels=1)",
        "loss x = kd(a, b T=4)",
        "optimizer sgd(lr=0.1 momentum=0.9)",
        "data fashion_mnist(batch=128 val=5000)",
    ],
    "missing ',' between list items": [
        "lr multistep([1 2])",
        "schedule s = step(1, at=[1 2])",
    ],
    "a tap needs a model and a layer, like `teacher.layer1`": [
        "tap t = teacher",
        "tap t = teacher(",
        "tap t = 1",
    ],
}


def explain(exc: UnexpectedInput, text: str, file: str, parse) -> SyntaxProblem:
    """The SyntaxProblem for one lark error: a message, the span of the offending token, a hint.

    `parse(text)` is the parser that raised `exc`, run on the labelled examples to learn the parser
    states they fail in; it raises lark's `UnexpectedInput` on a bad text.
    """
    span = _error_span(exc, text, file)

    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        if char == '"':
            return SyntaxProblem("unterminated string", span, hint='close the string with `"`')
        return SyntaxProblem(
            f"unexpected character {char!r}",
            span,
            hint="names use letters, digits and `_`; comments start with `#`",
        )

    token = getattr(exc, "token", None)
    at_end = isinstance(exc, UnexpectedEOF) or (token is not None and token.type == "$END")
    if at_end:
        opener = _unclosed_bracket(text, file)
        if opener:
            char, where = opener
            return SyntaxProblem(
                f"unclosed '{char}'",
                where,
                hint=f"add the matching '{_CLOSERS[char]}'",
            )
        return SyntaxProblem(
            "the recipe ends in the middle of a statement",
            span,
            hint=_expected_hint(exc),
        )

    opener = _unclosed_bracket(text[: exc.pos_in_stream], file)
    if token is not None and _starts_line(token, text) and _cannot_be_inside(opener, token):
        return _unclosed_before(opener, token, span)

    expected = set(getattr(exc, "expected", ()) or ())
    word = str(token) if token is not None else ""
    if word == "kdlang":
        return SyntaxProblem("the version line must come first", span, hint="start the file with `kdlang 1`")
    if word in grammar.stage_keywords() - grammar.statement_keywords() and "STAGE" in expected:
        return SyntaxProblem(
            f"`{word}` is only allowed inside a stage", span, hint="put it in a `stage NAME(epochs=N) { ... }` block"
        )
    label = _match_example(exc, parse) or _label_from_expected(exc, token)
    if label == "missing '=' in a declaration":
        return SyntaxProblem(f"expected '=' before {_describe(token)}", span, hint="a declaration reads `kind NAME = value`")
    if label is not None and label.startswith("missing ','"):
        return SyntaxProblem(f"{label}: unexpected {_describe(token)}", span, hint="separate them with ','")
    if label is not None and label.startswith("a tap"):
        return SyntaxProblem(label, span, hint="write `tap NAME = MODEL.LAYER`, or MODEL.output for the logits")

    swallowed = _keyword_after_trailing_comma(text, token, file)
    if swallowed is not None:
        keyword, comma = swallowed
        return SyntaxProblem(f"a ',' ends the list before `{keyword}`, so `{keyword}` is read as a list item",
                             comma, hint="remove the trailing ','")
    if token is not None and token.type == "NAME":
        words = _keywords_expected(expected)
        if words:
            guess = difflib.get_close_matches(str(token), words, n=1, cutoff=0.6)
            hint = f"did you mean `{guess[0]}`?" if guess else "expected one of: " + ", ".join(sorted(words))
            return SyntaxProblem(f"unknown keyword `{token}`", span, hint=hint)

    if _cannot_be_inside(opener, token):
        return _unclosed_before(opener, token, span)
    return SyntaxProblem(f"unexpected {_describe(token)}", span, hint=_expected_hint(exc))


def _unclosed_before(opener, token, span: Span) -> SyntaxProblem:
    char, where = opener
    return SyntaxProblem(
        f"unclosed '{char}' before `{token}`",
        where,
        notes=[Note("the next statement starts here", span)],
        hint=f"add the matching '{_CLOSERS[char]}'",
    )


def explain_glued(token, text: str, file: str) -> SyntaxProblem:
    """The SyntaxProblem for a keyword glued to what follows it: `modelteacher` is one unknown word."""
    word = re.match(r"[A-Za-z0-9_]+", text[token.start_pos:]).group(0)
    span = Span(file, token.line, token.column, token.line, token.column + len(word))
    if word in grammar.stage_keywords():
        return SyntaxProblem(f"`{word}` is only allowed inside a stage", span,
                             hint="put it in a `stage NAME(epochs=N) { ... }` block")
    if word in grammar.keywords():
        return SyntaxProblem(f"`{word}` cannot start here", span)
    return SyntaxProblem(f"unknown keyword `{word}`", span,
                         hint=f"did you mean `{token.value} {word[len(token.value):]}`?")


# What may come before a slip. lark compares parser states by stack depth, which depends on whether
# a version line or statements precede, so each example is also tried after each of these.
_EXAMPLE_PREFIXES = ("", "kdlang 1\n", 'recipe "r"\n', 'kdlang 1\nrecipe "r"\n',
                     "stage s {\n", "stage s {\ntrain a\n")


def _match_example(exc: UnexpectedInput, parse) -> str | None:
    """The label of an example that fails like `exc`: same parser state, same accepted terminals and
    same kind of unexpected token (lark's `match_examples` also accepts a different token, which
    mislabels unrelated slips that happen to fail in the same state)."""
    if not isinstance(exc, UnexpectedToken):
        return None
    accepts = frozenset(exc.accepts or ())
    for label, state, example_accepts, token_type in _example_failures(parse):
        if token_type == exc.token.type and example_accepts == accepts and state == exc.state:
            return label
    return None


@functools.cache
def _example_failures(parse) -> tuple:
    """(label, parser state, accepted terminals, token type) for where each labelled example fails
    when `parse` reads it (once per parse function: it must be the parser whose states we compare)."""
    failures = []
    for label, examples in _EXAMPLES.items():
        for prefix in _EXAMPLE_PREFIXES:
            for example in examples:
                try:
                    parse(prefix + example)
                except UnexpectedToken as failure:
                    failures.append((label, failure.state, frozenset(failure.accepts or ()), failure.token.type))
                except UnexpectedInput:  # an example that fails in the lexer teaches nothing here
                    continue
    return tuple(failures)


def _label_from_expected(exc: UnexpectedInput, token) -> str | None:
    """The slip read off what the parser would have accepted, when no example matched."""
    if token is None or token.type not in ("NAME", "NUMBER", "INT", "STRING", "TAP_REF"):
        return None
    expected = set(getattr(exc, "accepts", None) or getattr(exc, "expected", ()) or ())
    if expected == {"EQUAL"}:
        return "missing '=' in a declaration"
    if {"COMMA", "RPAR"} <= expected:
        return "missing ',' between arguments"
    if {"COMMA", "RSQB"} <= expected:
        return "missing ',' between list items"
    return None


def _starts_line(token, text: str) -> bool:
    """True when only whitespace precedes the token on its line."""
    line_start = text.rfind("\n", 0, token.start_pos) + 1
    return not text[line_start: token.start_pos].strip()


_TRAILING_COMMA_KEYWORD = re.compile(r",(\s*)([A-Za-z_][A-Za-z0-9_]*)\s+$")


def _keyword_after_trailing_comma(text: str, token, file: str):
    """`train a,` then `optimizer sgd(...)`: the comma makes `optimizer` a list item, and the parser
    only stumbles on `sgd`. Returns (keyword, span of the comma) for that slip, else None."""
    if token is None or token.type != "NAME":
        return None
    match = _TRAILING_COMMA_KEYWORD.search(text, 0, token.start_pos)
    if match is None or match.group(2) not in _item_keywords() or "\n" not in match.group(1):
        return None
    line = text.count("\n", 0, match.start()) + 1
    col = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
    return match.group(2), Span(file, line, col, line, col + 1)


def _cannot_be_inside(opener, token) -> bool:
    """True when `token` starts a statement that cannot sit inside the bracket left open before it.

    A stage's `{` legitimately holds stage items (`loss`, `optimizer`...); brackets hold none.
    """
    if opener is None or token is None:
        return False
    word = str(token)
    if opener[0] == "{":
        return word in grammar.statement_keywords() - grammar.stage_keywords()
    return word in _item_keywords()


def _error_span(exc: UnexpectedInput, text: str, file: str) -> Span:
    token = getattr(exc, "token", None)
    if token is not None and getattr(token, "line", None) is not None and token.type != "$END":
        end_col = token.end_column if token.end_line == token.line else token.column + 1
        return Span(file, token.line, token.column, token.line, end_col)
    line = getattr(exc, "line", None)
    col = getattr(exc, "column", None)
    if line is None or line < 1:
        line, col = _end_position(text)
    return Span(file, line, col, line, col + 1)


def _end_position(text: str) -> tuple[int, int]:
    lines = text.splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


def _unclosed_bracket(text: str, file: str):
    """The innermost bracket left open in `text` (ignoring strings and comments), with its span."""
    stack = []
    line, col, i = 1, 1, 0
    in_string = False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i, col = i + 2, col + 2
                continue
            if ch == '"' or ch == "\n":
                in_string = False
        elif ch == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif ch == '"':
            in_string = True
        elif ch in _CLOSERS:
            stack.append((ch, line, col))
        elif ch in ")]}" and stack and _CLOSERS[stack[-1][0]] == ch:
            stack.pop()
        if ch == "\n":
            line, col = line + 1, 1
        else:
            col += 1
        i += 1
    if not stack:
        return None
    ch, line, col = stack[-1]
    return ch, Span(file, line, col, line, col + 1)


def _item_keywords() -> frozenset[str]:
    """The words that start a statement or a stage item."""
    return grammar.statement_keywords() | grammar.stage_keywords()


def _keywords_expected(expected: set) -> list[str]:
    """The statement and stage-item keywords among the terminals the parser expected."""
    words = grammar.keyword_terminals()
    return sorted({words[t] for t in expected if t in words} & _item_keywords())


_TERMINAL_NAMES = {
    "EQUAL": "'='", "COMMA": "','", "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'",
    "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'", "DOT": "'.'", "COLON": "':'",
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "INT": "a whole number",
    "TAP_REF": "MODEL.LAYER", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'",
    "ARROW": "'->'", "RANGE_DOTS": "'..'", "$END": "end of file",
}
# Hints list the expected terminals sorted by name, and these two last: as lark's anonymous
# `__ANON_n` terminals they sorted after every named one, and the messages keep that order.
_LISTED_LAST = ("ARROW", "RANGE_DOTS")


def _describe(token) -> str:
    if token is None:
        return "input"
    if token.type == "$END":
        return "end of file"
    if token.type == "NAME":
        return f"`{token}`"
    if token.type in ("NUMBER", "INT", "STRING"):
        return f"{_TERMINAL_NAMES[token.type]} `{token}`"
    return f"`{token}`"


def _expected_hint(exc) -> str | None:
    expected = sorted(getattr(exc, "expected", ()) or (), key=lambda name: (name in _LISTED_LAST, name))
    if not expected:
        return None
    names = [_terminal_name(e) for e in expected]
    if len(names) > 8:
        return "expected one of: " + ", ".join(names[:8]) + ", ..."
    return "expected " + (" or ".join(names) if names else "something else")


def _terminal_name(terminal: str) -> str:
    """How a message names a terminal: `model` for a keyword, `'('` for punctuation."""
    word = grammar.keyword_terminals().get(terminal)
    return f"`{word}`" if word is not None else _TERMINAL_NAMES.get(terminal, terminal)
