"""Properties of the parser on generated recipes and on broken variants of them.

- every generated recipe parses;
- every node's span lies inside the text and points at what the node was parsed from;
- a broken recipe (tokens deleted, duplicated, swapped, inserted, text truncated) either parses or
  raises `SyntaxProblem` with a diagnostic positioned inside the file, never anything else.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdlang.syntax import ast
from kdlang.syntax.errors import SyntaxProblem
from kdlang.syntax.parser import parse
from strategies import KEYWORDS, layout, recipe_tokens, recipes

FILE = "gen.kd"
BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYWORD_OF = {
    ast.Version: "kdlang",
    ast.Title: "recipe",
    ast.Use: "use",
    ast.Data: "data",
    ast.Model: "model",
    ast.Tap: "tap",
    ast.Granularity: "granularity",
    ast.Level: "level",
    ast.Branch: "branch",
    ast.Schedule: "schedule",
    ast.Excite: "excite",
    ast.Loss: "loss",
    ast.Stage: "stage",
    ast.Train: "train",
    ast.Evaluate: "evaluate",
    ast.Optimizer: "optimizer",
    ast.Lr: "lr",
    ast.Losses: "losses",
    ast.Report: "report",
    ast.Runtime: "runtime",
    ast.Checkpoint: "from",
    ast.Comprehension: "for",
}


# ---- helpers -------------------------------------------------------------------------------


def walk(value, parent=None):
    """Every AST node below `value` (comments included), with the node that holds it."""
    if isinstance(value, tuple):
        for item in value:
            yield from walk(item, parent)
    elif attrs.has(type(value)) and not isinstance(value, ast.Span):
        yield value, parent
        for field in attrs.fields(type(value)):
            if field.name != "span":
                yield from walk(getattr(value, field.name), value)


def offset(text: str, line: int, col: int) -> int:
    """The index into `text` of a 1-based (line, col); lines are counted by "\\n", as lark does."""
    lines = text.split("\n")
    assert 1 <= line <= len(lines), f"line {line} outside 1..{len(lines)}"
    assert 1 <= col <= len(lines[line - 1]) + 1, f"col {col} outside line {line}"
    return sum(len(previous) + 1 for previous in lines[: line - 1]) + col - 1


def source_of(text: str, span: ast.Span) -> str:
    start, end = offset(text, span.line, span.col), offset(text, span.end_line, span.end_col)
    assert start <= end, f"span {span} ends before it starts"
    return text[start:end]


def contains(outer: ast.Span, inner: ast.Span) -> bool:
    return (outer.line, outer.col) <= (inner.line, inner.col) and (inner.end_line, inner.end_col) <= (
        outer.end_line,
        outer.end_col,
    )


def assert_spans_point_at_their_source(text: str, recipe: ast.Recipe) -> None:
    for node, parent in walk(recipe):
        span = node.span
        assert span.file == FILE
        written = source_of(text, span)
        if type(node) in KEYWORD_OF:
            assert written.startswith(KEYWORD_OF[type(node)]), (node, written)
        if isinstance(node, ast.Name):
            assert written == node.text
        elif isinstance(node, ast.Num):
            assert written == node.text
        elif isinstance(node, ast.Str):
            assert written[:1] == written[-1:] == '"' and len(written) >= 2
        elif isinstance(node, ast.Comment):
            assert written.rstrip() == node.text and written.startswith("#")
        elif isinstance(node, (ast.Ref, ast.Call)):
            head = node.head if isinstance(node, ast.Ref) else node.func.head
            assert written.startswith(head.text)
        if isinstance(node, ast.Stage):
            assert written.endswith("}")
        if parent is not None and not isinstance(parent, ast.Recipe):
            assert contains(parent.span, span), f"{type(node).__name__} {span} outside its parent"


def assert_positioned_in(text: str, problem: SyntaxProblem) -> None:
    diagnostic = problem.diagnostic
    assert diagnostic.message
    for span in [diagnostic.span, *(note.span for note in diagnostic.notes)]:
        assert span.file == FILE
        assert span.line >= 1 and span.col >= 1
        offset(text, span.line, span.col)  # asserts the position is inside the file


def parse_or_problem(text: str) -> None:
    """Parse a possibly broken recipe: success and SyntaxProblem are the only allowed outcomes."""
    try:
        recipe = parse(text, FILE)
    except SyntaxProblem as problem:
        assert_positioned_in(text, problem)
    else:
        assert_spans_point_at_their_source(text, recipe)


# ---- valid recipes -------------------------------------------------------------------------


@BOUNDED
@given(recipe_tokens().flatmap(lambda tokens: st.tuples(st.just(tokens), layout(tokens))))
def test_generated_recipes_parse_with_spans_pointing_at_their_source(tokens_and_text):
    tokens, text = tokens_and_text
    recipe = parse(text, FILE)
    assert_spans_point_at_their_source(text, recipe)
    assert recipe == parse(" ".join(tokens), FILE), "whitespace or comments changed the meaning"


def test_spans_of_a_known_recipe():
    text = 'kdlang 1\nmodel t = zoo.a() frozen  # c\nstage s(epochs=2) {\n  loss kd = 1.0 * x\n}\n'
    recipe = parse(text, FILE)
    assert_spans_point_at_their_source(text, recipe)
    stage = recipe.statements[1]
    assert (stage.span.line, stage.span.end_line, stage.span.end_col) == (3, 5, 2)
    assert source_of(text, stage.items[0].span) == "loss kd = 1.0 * x"
    assert source_of(text, recipe.comments[0].span) == "# c"


# ---- broken recipes ------------------------------------------------------------------------

JUNK = sorted(KEYWORDS) + [
    *"()[]{},=.:+-*/#@$'\\",
    "->", "..", '"', '"open', '"s"', "1", "5e-4", "1.", ".5", "x", "a.b", "a.b#1", "é", "\x00", "\t",
]  # fmt: skip


@st.composite
def broken_tokens(draw):
    """A valid recipe's tokens after one to three token-level edits."""
    tokens = draw(recipe_tokens(max_statements=5))
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["delete", "duplicate", "swap", "truncate", "insert"]))
        i = draw(st.integers(0, len(tokens)))
        if edit == "insert" or not tokens:
            tokens.insert(i, draw(st.sampled_from(JUNK)))
            continue
        i = min(i, len(tokens) - 1)
        if edit == "delete":
            del tokens[i]
        elif edit == "duplicate":
            tokens.insert(i, tokens[i])
        elif edit == "swap":
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        else:
            del tokens[i:]
    return tokens


@BOUNDED
@given(broken_tokens())
def test_broken_token_streams_give_positioned_syntax_problems(tokens):
    parse_or_problem(" ".join(tokens))


@BOUNDED
@given(broken_tokens().flatmap(layout))
def test_broken_recipes_with_comments_and_newlines_give_positioned_syntax_problems(text):
    parse_or_problem(text)


@BOUNDED
@given(recipes(max_statements=5), st.data())
def test_character_edits_give_positioned_syntax_problems(text, data):
    i = data.draw(st.integers(0, len(text)), label="at")
    edit = data.draw(st.sampled_from(["truncate", "delete", "insert"]), label="edit")
    if edit == "truncate":
        text = text[:i]
    elif edit == "delete":
        text = text[:i] + text[i + 1 :]
    else:
        text = text[:i] + data.draw(st.sampled_from(JUNK), label="junk") + text[i:]
    parse_or_problem(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "model",
        "model t = ",
        "stage s(epochs=1) { train a",
        "stage s(1) { }",
        "runtime(1)",
        "kdlang 1 kdlang 1",
        'use "unterminated',
        "loss x = f(a b)",
        "tap t = teacher",
        "train a",
        "evaluate a",
        "stage s { evaluate a, }",
        "@",
        "loss x = 1\n\n\n",
        "loss x = (1\n# unclosed\n",
    ],
)
def test_hand_written_mistakes(text):
    parse_or_problem(text)


# ---- once parser bugs: strings, non-ASCII text, keywords glued to names --------------------


@pytest.mark.parametrize("text", ['use "C:\\users\\me"', 'use "\\x"', 'recipe "\\N"'])
def test_bad_escapes_in_strings_are_syntax_problems(text):
    parse_or_problem(text)


def test_escapes_do_not_garble_non_ascii_text():
    assert parse('recipe "caf\u00e9 \\"x\\""').statements[0].text == 'caf\u00e9 "x"'


@pytest.mark.parametrize("text", ["modelteacher = zoo.x()", "tapx = a.b", "kdlang1", 'use "a" losses = 1'])
def test_a_keyword_is_not_a_prefix_of_a_longer_word(text):
    with pytest.raises(SyntaxProblem):
        parse(text)
