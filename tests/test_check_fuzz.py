"""Fuzzing `kdlang check` through the CLI: broken input gives diagnostics, never a traceback.

Valid recipes from tests/valid/ are mutated token by token (delete, duplicate, swap, replace, insert
keywords, punctuation, names, numbers, strings and brackets, truncate; and whole lines, so that many
mutants still parse and reach the semantic passes) and each mutant is checked
with `kdlang.cli.main(["check", ...])`. Whatever the mutant, the exit code is 0, 1 or 2; a non-zero
exit prints a positioned `FILE:LINE:COL: error:`; nothing prints a traceback, no exception escapes
`main`, and no diagnostic is an "internal error" (a crashed pass, i.e. a kdlang bug).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdlang.cli import main
from kdlang.syntax.parser import grammar_text

try:  # random grammar-valid recipes, written alongside the grammar (tests/strategies.py)
    from strategies import recipes as random_recipes
except ImportError:
    random_recipes = None

VALID = Path(__file__).parent / "valid"
RECIPES = {path.name: path.read_text(encoding="utf-8") for path in sorted(VALID.glob("*.kd"))}
SMALL_MODEL_RECIPES = ["mas_kd.kd", "two_stage.kd"]  # cheap enough to run the shape pass on
MUTANT = "mutant.kd"
POSITIONED_ERROR = re.compile(r"^\S+\.kd:\d+:\d+: error: ", re.MULTILINE)

# Layout (spaces, comments) and the significant tokens between them, in source order.
TOKEN = re.compile(
    r'(?P<layout>\s+|#[^\n]*)'
    r'|(?P<token>"(?:[^"\\\n]|\\.)*"|->|\.\.|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*(?:#[0-9]+)?'
    r'|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|.)',
    re.DOTALL,
)

KEYWORDS = sorted(set(re.findall(r'"([A-Za-z_]+)"', grammar_text())))
PUNCTUATION = ["(", ")", "{", "}", "[", "]", ",", "=", ".", ":", "->", "..", "+", "-", "*", "/", "#", '"', ";", "@"]
NUMBERS = ["0", "1", "-1", "0.0", "2.5", "5e-4", "1e999", "99999999999999999999", "512", "1e-300"]
STRINGS = ['""', '"x"', '"fragments/models.kd"', '"fragments"', f'"{MUTANT}"', '"../valid/basic_kd.kd"',
           '"runs/t.pt"', '"fp8"', '"\\n"']
NAMES = ["teacher", "student", "label", "index", "data", "mg", "l", "T", "levels", "code", "logits", "output",
         "epochs", "val", "best", "top1", "zoo.resnet8", "zoo.nope", "tv.resnet18", "t_logits.x", "s.layer1#2",
         "x", "_"]


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs, kind "layout" or "token"; joining the texts gives `text` back."""
    return [(m.lastgroup, m.group()) for m in TOKEN.finditer(text)]


def render(tokens) -> str:
    return "".join(text for _, text in tokens)


def significant(tokens) -> list[int]:
    return [i for i, (kind, _) in enumerate(tokens) if kind == "token"]


def inserted_words(tokens):
    """Words to insert: the grammar's keywords, punctuation, numbers, strings and names, the recipe's own too."""
    own = sorted({text for kind, text in tokens if kind == "token"}) or NAMES
    return st.one_of(st.sampled_from(KEYWORDS), st.sampled_from(PUNCTUATION), st.sampled_from(NUMBERS),
                     st.sampled_from(STRINGS), st.sampled_from(NAMES), st.sampled_from(own))


def same_kind_words(word: str, tokens):
    """Replacements that keep the grammar happy more often: a name for a name, a number for a number."""
    if word[0] == '"':
        return st.sampled_from(STRINGS)
    if word[0].isdigit():
        return st.sampled_from(NUMBERS)
    if word[0].isalpha() or word[0] == "_":
        own = sorted({t for kind, t in tokens if kind == "token" and (t[0].isalpha() or t[0] == "_")})
        return st.sampled_from(own + NAMES)
    return st.sampled_from(PUNCTUATION)


@st.composite
def line_mutation(draw, tokens):
    """Delete, duplicate or swap whole lines: statements move, vanish or repeat, the syntax mostly holds."""
    lines = render(tokens).split("\n")
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    kind = draw(st.sampled_from(["delete", "duplicate", "swap"]))
    if kind == "delete":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(j, lines[i])
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return tokenize("\n".join(lines))


ANY_EDIT = ("delete", "duplicate", "swap", "replace", "rename", "insert", "glue", "truncate", "lines")
GENTLE_EDIT = ("rename", "lines")  # mostly still parses: exercises the semantic passes


@st.composite
def mutation(draw, tokens, kinds=ANY_EDIT):
    """One random edit of a token list."""
    tokens = list(tokens)
    places = significant(tokens)
    if not places:  # everything was cut away: start again from one word
        return [("token", draw(inserted_words(tokens)))]
    i = draw(st.sampled_from(places))
    kind = draw(st.sampled_from(kinds))
    if kind == "lines":
        return draw(line_mutation(tokens))
    if kind == "rename":
        tokens[i] = ("token", draw(same_kind_words(tokens[i][1], tokens)))
    elif kind == "delete":
        tokens[i] = ("layout", " ")
    elif kind == "duplicate":
        tokens[i:i] = [tokens[i], ("layout", " ")]
    elif kind == "swap":
        j = draw(st.sampled_from(places))
        tokens[i], tokens[j] = tokens[j], tokens[i]
    elif kind == "replace":
        tokens[i] = ("token", draw(inserted_words(tokens)))
    elif kind == "insert":
        tokens[i:i] = [("token", draw(inserted_words(tokens))), ("layout", " ")]
    elif kind == "glue":  # no space: `teacher.pool(`, `12e`, `"x"y`...
        tokens[i:i] = [("token", draw(inserted_words(tokens)))]
    else:
        text = render(tokens)
        cut = draw(st.integers(0, len(text)))
        tokens = tokenize(text[:cut])
    return tokens


@st.composite
def mutants(draw, names=tuple(RECIPES), kinds=ANY_EDIT):
    tokens = tokenize(RECIPES[draw(st.sampled_from(names))])
    for _ in range(draw(st.integers(1, 3))):
        tokens = draw(mutation(tokens, kinds))
    return render(tokens)


def any_mutants(names=tuple(RECIPES)):
    return st.one_of(mutants(names), mutants(names, GENTLE_EDIT))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with the valid recipes' fragments, so a mutant's `use` lines still find them."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(VALID / "fragments", root / "fragments")
    return root


def check_cli(workdir: Path, text: str, *flags: str) -> tuple[int, str]:
    path = workdir / MUTANT
    path.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", *flags, str(path)])
    return code, out.getvalue() + err.getvalue()


def assert_well_behaved(code: int, output: str, text: str) -> None:
    context = f"\n--- recipe ---\n{text}\n--- output ---\n{output}"
    assert code in (0, 1, 2), f"exit code {code}" + context
    assert "Traceback" not in output, context
    assert "internal error" not in output, context
    if code != 0:
        assert POSITIONED_ERROR.search(output), "no positioned error" + context
    else:
        assert ": error:" not in output, "errors printed but exit 0" + context


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_tokenizer_round_trips_the_valid_recipes():
    for text in RECIPES.values():
        tokens = tokenize(text)
        assert render(tokens) == text
        assert {"kdlang", "stage", "{", "}", "="} <= {t for kind, t in tokens if kind == "token"}


def test_the_unmutated_recipes_are_clean(workdir):
    for name, text in RECIPES.items():
        code, output = check_cli(workdir, text, "--no-shapes")
        assert code == 0, f"{name}:\n{output}"
        assert "warning" not in output, f"{name}:\n{output}"


@FUZZ
@given(text=any_mutants())
def test_mutated_recipes_get_diagnostics_not_tracebacks(workdir, text):
    code, output = check_cli(workdir, text, "--no-shapes")
    assert_well_behaved(code, output, text)


@settings(FUZZ, max_examples=30)
@given(text=any_mutants(SMALL_MODEL_RECIPES))
def test_mutated_recipes_survive_the_shape_pass(workdir, text):
    code, output = check_cli(workdir, text)
    assert_well_behaved(code, output, text)


@pytest.mark.skipif(random_recipes is None, reason="tests/strategies.py (random valid recipes) is absent")
@settings(FUZZ, max_examples=60)
@given(text=st.deferred(lambda: random_recipes()))
def test_random_grammar_valid_recipes_get_diagnostics_not_tracebacks(workdir, text):
    code, output = check_cli(workdir, text, "--no-shapes")
    assert_well_behaved(code, output, text)
