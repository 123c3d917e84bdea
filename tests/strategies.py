"""Hypothesis strategies that generate valid kdlang recipes from the grammar's constructs.

A recipe is built as a token sequence first (`recipe_tokens`), then laid out with random whitespace
and comments between the tokens (`layout`); `recipes()` does both. Keeping the tokens lets mutation
tests delete, duplicate or swap whole tokens. Every generated text parses: names avoid the
grammar's words, and expressions get the parentheses their precedence needs (plus random extra ones).

Reuse from another test module (pytest puts `tests/` on the path): `from strategies import recipes`,
then `@given(recipes())`.

Every strategy is built once, at import: building strategies inside `@composite` functions on each
draw made generation several times slower than parsing.
"""

from __future__ import annotations

import random
import re

from hypothesis import strategies as st

from kdlang.syntax.parser import grammar_text

#: Every word the grammar spells out ("model", "on", "true", ...); generated names avoid all of them.
KEYWORDS = frozenset(re.findall(r'"([A-Za-z_]+)"', grammar_text()))

# How strongly a token sequence binds, mirroring the grammar's expr / sum / product / unary / atom.
EXPR, SUM, PRODUCT, UNARY, ATOM = range(5)


# ---- building blocks -----------------------------------------------------------------------


def _flatten(groups) -> tuple:
    tokens: list[str] = []
    for group in groups:
        tokens += [group] if isinstance(group, str) else list(group)
    return tuple(tokens)


def seq(*parts):
    """The tokens of `parts` in order; a part is a literal token or a strategy of token(s)."""
    return st.tuples(*(st.just(p) if isinstance(p, str) else p for p in parts)).map(_flatten)


def maybe(strategy):
    """The strategy's tokens, or nothing."""
    return st.one_of(st.just(()), strategy)


def _commas(groups, trailing: bool) -> tuple:
    """Token groups joined by commas, with the trailing comma the grammar allows when asked."""
    tokens: list[str] = []
    for i, group in enumerate(groups):
        tokens += ([","] if i else []) + ([group] if isinstance(group, str) else list(group))
    return (*tokens, ",") if trailing and groups else tuple(tokens)


def comma_list(strategy, min_size=0, max_size=3, trailing_comma=True):
    """`a, b, c`, optionally with a trailing comma (where the grammar allows one)."""
    trailing = st.booleans() if trailing_comma else st.just(False)
    return st.tuples(st.lists(strategy, min_size=min_size, max_size=max_size), trailing).map(
        lambda pair: _commas(*pair)
    )


# ---- lexical -------------------------------------------------------------------------------

# Familiar names, and names that merely start or end like a keyword (the lexer must not split them).
_COMMON_NAMES = [
    "teacher", "student", "t_feat", "s_logits", "mg", "kd", "ce", "T", "x", "_", "_a1", "label",
    "models", "lr_x", "format", "inx", "truex", "none_", "for1", "stage2", "fromage", "ontology",
    "level0", "reports", "dataset", "tapped", "Loss", "TRUE",
]  # fmt: skip
_HEADS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_DIGITS = "0123456789"

names = st.one_of(
    st.sampled_from(_COMMON_NAMES),
    st.builds(str.__add__, st.sampled_from(_HEADS), st.text(_HEADS + _DIGITS, max_size=6)),
).filter(lambda name: name not in KEYWORDS)

_fractions = st.one_of(st.just(""), st.text(_DIGITS, min_size=1, max_size=3).map(lambda f: "." + f))
_exponents = st.sampled_from(["", "", "e5", "e-4", "E+3", "e10", "E0"])
numbers = st.one_of(
    st.sampled_from(["0", "1", "0.1", "5e-4", "1E+3", "240", "2.5e10"]),
    st.builds(lambda i, f, e: i + f + e, st.text(_DIGITS, min_size=1, max_size=3), _fractions, _exponents),
)

_string_chars = st.one_of(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'),
    st.sampled_from(['\\"', "\\\\", "\\n", "\\t"]),
)
strings = st.lists(_string_chars, max_size=6).map(lambda parts: '"' + "".join(parts) + '"')

_comment_chars = st.one_of(
    st.characters(min_codepoint=32, max_codepoint=126),
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
)
comments = st.text(_comment_chars, max_size=12).map(lambda body: "#" + body)

#: `teacher.layer1.0.relu#2`: a model, then path parts (digits and words alike), maybe `#k`.
tap_refs = st.builds(
    lambda model, parts, k: ".".join([model, *parts]) + ("" if k is None else f"#{k}"),
    names,
    st.lists(st.text(_HEADS + _DIGITS, min_size=1, max_size=6), min_size=1, max_size=3),
    st.one_of(st.none(), st.integers(0, 12)),
)


# ---- expressions: (tokens, binding strength) ------------------------------------------------


def _paren(piece):
    return ("(", *piece[0], ")"), ATOM


def _fit(piece, slot) -> tuple:
    """The tokens of `piece` as an operand of a slot that needs at least `slot` strength."""
    return (piece if piece[1] >= slot else _paren(piece))[0]


def _binop(args):
    left, op, right = args
    strength = SUM if op in "+-" else PRODUCT
    return (*_fit(left, strength), op, *_fit(right, strength + 1)), strength


def _neg(piece):
    return ("-", *_fit(piece, UNARY)), UNARY


def _pair(args):
    start, op, end = args
    return (*_fit(start, SUM), op, *_fit(end, SUM)), EXPR


def _atom(tokens):
    return tokens, ATOM


def refs(exprs=None):
    """`a.b[c].d`: attribute trailers, and index trailers when `exprs` is given."""
    trailer = seq(".", names)
    if exprs is not None:
        trailer = st.one_of(trailer, seq("[", exprs.map(lambda e: e[0]), "]"))
    return seq(names, st.lists(trailer, max_size=2).map(_flatten))


def kwargs(exprs):
    return seq(names, "=", exprs.map(lambda e: e[0]))


def calls(exprs):
    """`f(a, b, k=v)`, with comprehensions `for l in mg.levels: expr` among the arguments."""
    comprehension = seq("for", names, "in", refs(), ":", exprs.map(lambda e: e[0]))
    argument = st.one_of(exprs.map(lambda e: e[0]), kwargs(exprs), comprehension)
    return seq(refs(), "(", comma_list(argument), ")")


def lists(exprs):
    return seq("[", comma_list(exprs.map(lambda e: e[0])), "]")


_atoms = st.one_of(
    numbers.map(lambda n: ((n,), ATOM)),
    strings.map(lambda s: ((s,), ATOM)),
    st.sampled_from(["true", "false", "none"]).map(lambda w: ((w,), ATOM)),
    refs().map(_atom),
)


def _compound(children):
    return st.one_of(
        st.tuples(children, st.sampled_from("+-*/"), children).map(_binop),
        children.map(_neg),
        st.tuples(children, st.sampled_from(["->", ".."]), children).map(_pair),
        children.map(_paren),
        lists(children).map(_atom),
        calls(children).map(_atom),
        refs(children).map(_atom),
    )


#: (tokens, binding strength) of a random expression; `expression_tokens` drops the strength.
expressions = st.recursive(_atoms, _compound, max_leaves=6)
expression_tokens = expressions.map(lambda e: e[0])
call_tokens = calls(expressions)
list_tokens = lists(expressions)
kwarg_list = comma_list(kwargs(expressions))
name_list = comma_list(names, min_size=1, trailing_comma=False)


# ---- statements ----------------------------------------------------------------------------

checkpoints = st.one_of(seq("from", strings), seq("from", strings, "key", "=", strings), seq("from", "stage", names))


def declaration(keyword: str):
    """`keyword NAME = expr`: schedules, excitations, losses."""
    return seq(keyword, names, "=", expression_tokens)


_level = seq("level", names, st.lists(kwargs(expressions), max_size=3).map(_flatten))
_levels = st.one_of(seq("{", "}"), seq("{", st.lists(_level, min_size=1, max_size=3).map(_flatten), "}"))

_stage_item = st.one_of(
    seq("train", name_list),
    seq("evaluate", name_list),
    seq("losses", name_list),
    seq("optimizer", call_tokens),
    seq("lr", call_tokens),
    declaration("loss"),
    declaration("excite"),
)

_select = seq(maybe(st.just(",")), "select", names, "on", names)
_noise = seq(maybe(st.just(",")), "noise", list_tokens)
_report_options = st.one_of(seq(), seq(maybe(_select), maybe(_noise)), seq(_noise, _select))  # each at most once

statement_tokens = st.one_of(
    seq("recipe", strings),
    seq("use", strings),
    seq("data", maybe(seq(names, "=")), call_tokens),
    seq("model", names, "=", call_tokens, maybe(checkpoints), maybe(st.just("frozen"))),
    seq("tap", names, "=", tap_refs),
    seq("granularity", names, "on", names, maybe(seq("mirrors", names)), maybe(checkpoints), maybe(_levels)),
    seq("branch", names, "on", names, "=", call_tokens, maybe(checkpoints)),
    declaration("schedule"),
    declaration("excite"),
    declaration("loss"),
    seq("stage", names, maybe(seq("(", kwarg_list, ")")), "{", st.lists(_stage_item, max_size=4).map(_flatten), "}"),
    seq("report", name_list, "on", names, _report_options),
    seq("runtime", "(", kwarg_list, ")"),
)

_version = maybe(seq("kdlang", st.integers(0, 3).map(str)))


def recipe_tokens(max_statements=8):
    """The tokens of a valid recipe (a list, so tests may edit it): maybe `kdlang N`, then statements."""
    statements = st.lists(statement_tokens, max_size=max_statements).map(_flatten)
    return st.tuples(_version, statements).map(lambda pair: [*pair[0], *pair[1]])


# ---- layout --------------------------------------------------------------------------------

_WORD = re.compile(r'[A-Za-z0-9_"#]')
#: What may stand between two tokens; "" only where the tokens do not run together (`_glue_ok`).
SPACES = ["", " ", " ", " ", "  ", "\n", "\n\n", "\t", "\r\n", "\n    ", "\n  "]

_placed_comments = st.lists(st.tuples(st.integers(0, 10**6), comments), max_size=5)
_file_head = st.one_of(st.just(""), comments.map(lambda c: c + "\n"))
_file_tail = st.tuples(
    st.sampled_from(["", "\n", "\n\n"]),
    st.one_of(st.just(""), comments.map(lambda c: " " + c), comments.map(lambda c: f"\n{c}\n")),
).map("".join)


def _glue_ok(left: str, right: str) -> bool:
    """Two tokens may touch without space unless both are word-like (`model teacher`, `64 T`)."""
    return not (_WORD.search(left[-1]) and _WORD.search(right[0]))


@st.composite
def layout(draw, tokens):
    """Join tokens with random whitespace, and comments at random gaps and at each end of the file.

    The whitespace comes from one drawn seed (0: single spaces, the simplest example) rather than
    one draw per gap.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    gaps = [rng.choice(SPACES) if seed else " " for _ in tokens[1:]]
    gaps = [gap or ("" if _glue_ok(a, b) else " ") for gap, a, b in zip(gaps, tokens, tokens[1:])]
    for at, comment in draw(_placed_comments):
        if gaps:
            gaps[at % len(gaps)] += f" {comment}\n"
    body = "".join(token + gap for token, gap in zip(tokens, [*gaps, ""]))
    return draw(_file_head) + body + draw(_file_tail)


def recipes(max_statements=8):
    """Random valid recipe texts, laid out messily, with comments wherever whitespace may go."""
    return recipe_tokens(max_statements).flatmap(layout)
