"""The formatter: golden fixtures, exact rules, and its three promises on generated recipes.

Promises: formatting is idempotent, keeps the meaning (the ASTs compare equal, spans ignored), and
keeps every comment, in order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from kdlang.syntax import ast
from kdlang.syntax.formatter import format_expr, format_recipe, format_text, quote
from kdlang.syntax.parser import parse
from strategies import recipes

FIXTURES = Path(__file__).parent / "fixtures" / "fmt"
CASES = sorted(p.name.removesuffix(".in.kd") for p in FIXTURES.glob("*.in.kd"))


def comment_texts(text: str) -> list[str]:
    return [c.text for c in parse(text).comments]


def assert_promises(text: str) -> str:
    """Check the formatter's promises on one input; returns the formatted text."""
    once = format_text(text)
    assert format_text(once) == once, "not idempotent"
    assert parse(once) == parse(text), "meaning changed"
    assert comment_texts(once) == comment_texts(text), "comments lost, duplicated or reordered"
    assert once.endswith("\n") and not once.endswith("\n\n")
    for line in once.split("\n"):
        assert line == line.rstrip(), f"trailing whitespace in {line!r}"
    assert "\n\n\n" not in once
    return once


# ---- golden fixtures -----------------------------------------------------------------------


def test_there_are_enough_fixtures():
    assert len(CASES) >= 8
    for name in CASES:
        assert (FIXTURES / f"{name}.out.kd").exists(), f"{name}.in.kd has no .out.kd"


@pytest.mark.parametrize("name", CASES)
def test_fixture_formats_to_expected(name):
    source = (FIXTURES / f"{name}.in.kd").read_text(encoding="utf-8")
    expected = (FIXTURES / f"{name}.out.kd").read_text(encoding="utf-8")
    assert format_text(source, f"{name}.in.kd") == expected


@pytest.mark.parametrize("name", CASES)
def test_fixture_keeps_promises(name):
    source = (FIXTURES / f"{name}.in.kd").read_text(encoding="utf-8")
    assert_promises(source)
    assert_promises((FIXTURES / f"{name}.out.kd").read_text(encoding="utf-8"))


# ---- generated recipes ---------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes())
def test_generated_recipes_keep_promises(text):
    assert_promises(text)


# ---- expressions ---------------------------------------------------------------------------


def expr_of(source: str) -> str:
    """The formatted value of `loss x = SOURCE`."""
    statement = parse(f"loss x = {source}").statements[0]
    return format_expr(statement.value)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("(a - b) - c", "a - b - c"),
        ("a - (b - c)", "a - (b - c)"),
        ("a-(b+c)", "a - (b + c)"),
        ("(a * b) + c", "a * b + c"),
        ("a * (b + c)", "a * (b + c)"),
        ("a / (b / c)", "a / (b / c)"),
        ("(a / b) / c", "a / b / c"),
        ("-(a)", "-a"),
        ("-(a * b)", "-(a * b)"),
        ("(-a) * b", "-a * b"),
        ("a - -b", "a - -b"),
        ("((x))", "x"),
        ("(0 + 1) -> (2 * 3)", "0 + 1 -> 2 * 3"),
        ("f((a -> b))", "f(a -> b)"),
        ("[(a..b), 1]", "[a..b, 1]"),
        ("x[(i - 1)].y", "x[i - 1].y"),
        ("5e-4*x", "5e-4 * x"),
        ("f( a , k = 1 , )", "f(a, k=1)"),
        ("sum(for l in mg.levels : l.T*2)", "sum(for l in mg.levels: l.T * 2)"),
        ('"a\\"b\\\\c"', '"a\\"b\\\\c"'),
        ("[ true , false , none ]", "[true, false, none]"),
    ],
)
def test_expression_layout(source, expected):
    assert expr_of(source) == expected


@pytest.mark.parametrize(
    "value", ["", "plain", 'say "hi"', "back\\slash", "line\nbreak", "tab\t", "é", 'é"', "\x01", "\U0001f600\\"]
)
def test_quote_reads_back_as_the_same_value(value):
    statement = parse(f"use {quote(value)}").statements[0]
    assert statement.path == value


def test_quote_leaves_plain_unicode_alone():
    assert quote("naïve") == '"naïve"'


# ---- layout rules --------------------------------------------------------------------------


def test_empty_recipe_is_one_newline():
    assert format_text("") == "\n"
    assert format_text("  \n\n ") == "\n"


def test_same_kind_statements_have_no_blank_line_and_kinds_are_separated():
    assert format_text("tap a = t.x tap b = t.y loss l = 1") == "tap a = t.x\ntap b = t.y\n\nloss l = 1\n"


def test_blocks_are_surrounded_by_blank_lines():
    text = format_text("loss a = 1 stage s { train m } stage t { train m } loss b = 2")
    assert text == "loss a = 1\n\nstage s {\n  train m\n}\n\nstage t {\n  train m\n}\n\nloss b = 2\n"


def test_equals_signs_align_within_a_run():
    text = format_text("model t = z.a() model student = z.b()")
    assert text == "model t       = z.a()\nmodel student = z.b()\n"


def test_source_order_is_kept_even_when_the_title_comes_late():
    text = format_text('use "x" recipe "late"')
    assert text == 'use "x"\n\nrecipe "late"\n'


def test_comment_on_the_last_line_of_a_multiline_statement_trails_it():
    assert format_text("loss a = 1 +\n 2 # c\n") == "loss a = 1 + 2  # c\n"


def test_comment_inside_a_multiline_statement_moves_before_it():
    assert format_text("loss a = 1 + # c\n 2\n") == "# c\nloss a = 1 + 2\n"


def test_comments_on_one_line_statements_stay_with_the_last_statement_on_that_line():
    assert format_text("tap a = t.x tap b = t.y # c\n") == "tap a = t.x\ntap b = t.y  # c\n"


def test_a_hash_after_a_tap_path_is_a_comment_unless_it_is_a_call_index():
    assert format_text("tap a = t.x#2 tap b = t.y#c\n") == "tap a = t.x#2\ntap b = t.y  #c\n"


def test_formats_a_recipe_built_without_spans():
    recipe = ast.Recipe(
        file="<built>",
        version=ast.Version(1),
        statements=(
            ast.Loss(ast.Name("l"), ast.BinOp("-", ast.Num(1, "1"), ast.BinOp("-", ast.Num(2, "2"), ast.Num(3, "3")))),
        ),
    )
    assert format_recipe(recipe) == "kdlang 1\n\nloss l = 1 - (2 - 3)\n"
