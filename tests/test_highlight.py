"""The Pygments lexer: every shipped recipe lexes cleanly, each kind of word gets its token type,
its keywords are the grammar's, and Pygments finds it by name and file name (the entry point)."""

from __future__ import annotations

from pathlib import Path

import pygments.lexers
import pytest
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String

from kdlang.syntax import grammar
from kdlang.syntax.highlight import KdlangLexer, constant_keywords, declaring_keywords

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p for folder in ("recipes", "tests/recipes", "tests/valid", "examples")
                 for p in (ROOT / folder).rglob("*.kd"))


def tokens(text: str) -> list[tuple]:
    return [(kind, value) for kind, value in KdlangLexer().get_tokens(text) if value.strip()]


def kind_of(text: str, word: str):
    """The token type of the first token that is exactly `word`."""
    return next(kind for kind, value in tokens(text) if value == word)


def test_shipped_recipes_lex_without_errors():
    assert len(SHIPPED) > 50
    bad = {}
    for path in SHIPPED:
        errors = [value for kind, value in KdlangLexer().get_tokens(path.read_text()) if kind in Error]
        if errors:
            bad[str(path.relative_to(ROOT))] = errors[:5]
    assert not bad


def test_lexing_gives_back_the_text():
    text = (ROOT / "tests/recipes/tiny_mas.kd").read_text()
    assert "".join(value for _, value in KdlangLexer().get_tokens(text)) == text


RECIPE = '''# a comment
kdlang 1
recipe "tiny"
data synthetic(shape=[1, 28, 28], classes=4)
model teacher = zoo.cnn_small() from "runs/t/best.pt" frozen
tap t_feat = teacher.layer1.0.relu#2
schedule ramp = linear(0 -> 1, epochs=0..2)
stage distill(epochs=2) {
  train student
  lr multistep([1], gamma=0.1)
  optimizer sgd(lr=0.05, weight_decay=5e-4, nesterov=true)
  loss kd = 0.9 * kd(s, t, T=4)  # trailing comment
}
'''


def test_token_types():
    assert kind_of(RECIPE, "kdlang") in Keyword
    assert kind_of(RECIPE, "stage") in Keyword
    assert kind_of(RECIPE, "frozen") in Keyword
    assert kind_of(RECIPE, "true") in Keyword.Constant
    assert kind_of(RECIPE, '"tiny"') in String
    assert kind_of(RECIPE, "0.05") in Number.Float
    assert kind_of(RECIPE, "5e-4") in Number.Float
    assert kind_of(RECIPE, "28") in Number.Integer
    assert kind_of(RECIPE, "# a comment") in Comment
    assert kind_of(RECIPE, "# trailing comment") in Comment
    assert kind_of(RECIPE, "->") in Operator and kind_of(RECIPE, "..") in Operator
    assert kind_of(RECIPE, "teacher") is Name.Variable  # declared
    assert kind_of(RECIPE, "distill") is Name.Variable
    assert kind_of(RECIPE, "student") is Name  # referred to
    assert kind_of(RECIPE, "synthetic") is Name  # `data NAME(...)` names a data set, declares nothing


def test_keywords_in_argument_position_are_names():
    # `lr` starts a stage item, but `lr=0.05` is an optimizer's argument: a name, as to the parser
    lrs = [kind for kind, value in tokens(RECIPE) if value == "lr"]
    assert lrs == [Keyword, Name.Attribute]


def test_a_tap_call_index_is_no_comment():
    found = tokens("tap t = teacher.layer1.0.relu#2\n")
    assert (Name, "teacher.layer1.0.relu") in found and (Number.Integer, "#2") in found
    assert not any(kind in Comment for kind, _ in found)


def test_keywords_are_the_grammars():
    every = {value for kind, value in tokens(", ".join(sorted(grammar.keywords()))) if kind in Keyword}
    assert every == grammar.keywords()
    assert constant_keywords() == {"true", "false", "none"}
    assert {"model", "tap", "stage", "level", "granularity", "loss"} <= set(declaring_keywords())
    assert not {"train", "evaluate", "losses", "report", "select"} & set(declaring_keywords())


@pytest.mark.parametrize("name", ["kd", "kdlang"])
def test_pygments_finds_the_lexer(name):
    assert isinstance(pygments.lexers.get_lexer_by_name(name), KdlangLexer)
    assert isinstance(pygments.lexers.get_lexer_for_filename("recipe.kd"), KdlangLexer)
