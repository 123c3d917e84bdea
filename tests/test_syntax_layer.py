"""The syntax layer's structure: per-parse lexer state (threads never mix), keywords read off the
grammar, named terminals, one-way imports, and the expression walker the passes share."""

from __future__ import annotations

import ast as pyast
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import pytest

from kdlang.syntax import ast, errors, grammar
from kdlang.syntax.errors import SyntaxProblem
from kdlang.syntax.formatter import format_recipe
from kdlang.syntax.parser import MAX_DEPTH, parse

SYNTAX = Path(ast.__file__).parent

# ---- two threads, two texts ----------------------------------------------------------------

FIRST = """kdlang 1  # the version
recipe "first"
# the teacher
model teacher = zoo.cnn_wide(classes=10) frozen
model student = zoo.cnn(classes=10)  # small
tap t_feat = teacher.layer1.0.relu#2
schedule warm = 0 -> 1
stage distill(epochs=3) {  # one stage
  train student
  # the loss
  loss kd = kd(student, teacher, T=4) * warm
}
# the end
"""

SECOND = """kdlang 1
data fashion_mnist(batch=128)
model m = zoo.mlp(classes=10)   # one model
loss ce = ce(m, label)
stage s(epochs=1) { train m  optimizer sgd(lr=0.1) }
report top1 on test, noise [0.0, 0.1]  # noisy
"""

BROKEN = "kdlang 1\nmodel teacher zoo.cnn_wide()\n"
GLUED = "kdlang 1\nmodelteacher = zoo.cnn()\n"


def spans(node, found: list) -> list:
    """(class, span) of every node in a parsed recipe, in field order."""
    if attrs.has(type(node)):
        found.append((type(node).__name__, getattr(node, "span", None)))
        for field in attrs.fields(type(node)):
            spans(getattr(node, field.name), found)
    elif isinstance(node, tuple):
        for item in node:
            spans(item, found)
    return found


def outcome(text: str):
    """What one parse gives, spans and comments included (AST equality alone ignores spans)."""
    try:
        recipe = parse(text, "r.kd")
    except SyntaxProblem as problem:
        return problem.diagnostic.format()
    return recipe, spans(recipe, []), [(c.text, c.span) for c in recipe.comments]


def test_concurrent_parses_keep_their_own_comments_and_spans():
    texts = [FIRST, SECOND, BROKEN, GLUED]
    expected = [outcome(text) for text in texts]
    assert [c[0] for c in expected[0][2]] == ["# the version", "# the teacher", "# small", "# one stage",
                                             "# the loss", "# the end"]
    assert [c[0] for c in expected[1][2]] == ["# one model", "# noisy"]
    assert "expected '=' before" in expected[2] and "unknown keyword `modelteacher`" in expected[3]
    errors._example_failures.cache_clear()  # the explainer's own parses run among the others too

    def work(seed: int) -> list:
        order = [(seed + i) % len(texts) for i in range(40)]
        return [(i, outcome(texts[i])) for i in order]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = [r for batch in pool.map(work, range(12)) for r in batch]
    finally:
        sys.setswitchinterval(interval)
    for i, got in results:
        assert got == expected[i], texts[i]


# ---- keywords and terminals ------------------------------------------------------------------


def test_keywords_are_exactly_the_words_the_grammar_quotes():
    quoted = set(re.findall(r'"([A-Za-z_]+)"', grammar.grammar_text()))
    assert grammar.keywords() == quoted
    assert set(grammar.keyword_terminals()) == {word.upper() for word in quoted}


def test_statement_and_stage_keywords_are_read_off_the_rules():
    assert grammar.statement_keywords() == {
        "kdlang", "recipe", "use", "data", "model", "tap", "granularity", "branch", "schedule", "excite",
        "loss", "stage", "report", "runtime"}
    assert grammar.stage_keywords() == {"train", "evaluate", "optimizer", "lr", "loss", "excite", "losses"}


def test_every_terminal_has_a_name_and_a_message_name():
    parser = grammar.lark_parser()
    names = {terminal.name for terminal in parser.terminals}
    assert not [name for name in names if name.startswith("__")], "give every terminal a name in the grammar"
    assert {"ARROW", "RANGE_DOTS"} <= names
    for name in names - set(parser.lexer_conf.ignore):  # a parser loaded from its cache has no ignore_tokens
        shown = errors._terminal_name(name)
        assert shown != name, f"errors._TERMINAL_NAMES has no message name for {name}"
    assert errors._terminal_name("ARROW") == "'->'" and errors._terminal_name("RANGE_DOTS") == "'..'"


def test_a_glued_keyword_is_one_unknown_word():
    with pytest.raises(SyntaxProblem) as caught:
        parse("kdlang 1\nmodelteacher = zoo.cnn()\n")
    assert caught.value.diagnostic.message == "unknown keyword `modelteacher`"
    assert caught.value.diagnostic.hint == "did you mean `model teacher`?"


# ---- imports go one way --------------------------------------------------------------------


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any level (function-level imports included)."""
    found = set()
    for node in pyast.walk(pyast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, pyast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, pyast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_explainer_and_the_grammar_do_not_import_the_parser():
    assert "kdlang.syntax.parser" not in imported_modules(SYNTAX / "errors.py")
    # of kdlang, the grammar reads only where the user's cache folder is (a bottom-layer module)
    assert {m for m in imported_modules(SYNTAX / "grammar.py") if m.startswith("kdlang")} <= {
        "kdlang", "kdlang.user_cache"}


# ---- walking expressions ---------------------------------------------------------------------


def expr(text: str):
    return parse(f"loss x = {text}").statements[0].value


def test_children_of_each_kind_of_expression():
    call = expr("f(a, for l in m.levels: l * 2, k=[1, -b])")
    a, comprehension = call.args
    kwarg, = call.kwargs
    assert ast.children(call) == (a, comprehension, kwarg)  # not `f`: a callee is not a value
    assert ast.children(comprehension) == (comprehension.iterable, comprehension.body)
    assert ast.children(kwarg) == (kwarg.value,)
    assert ast.children(kwarg.value) == kwarg.value.items
    assert ast.children(kwarg.value.items[1]) == (kwarg.value.items[1].operand,)
    binop = comprehension.body
    assert ast.children(binop) == (binop.left, binop.right)
    arrow, range_ = expr("0 -> 1"), expr("1..2")
    assert ast.children(arrow) == (arrow.start, arrow.end) and ast.children(range_) == (range_.start, range_.end)
    ref = expr("smg[l].logits[2]")
    assert ast.children(ref) == (ref.trail[0], ref.trail[2])  # the indexes, not `.logits`
    for leaf in (expr("1"), expr('"s"'), expr("true"), expr("none"), ast.Name("n"), ast.Stage(ast.Name("s"))):
        assert ast.children(leaf) == ()


def test_walk_is_depth_first_in_source_order():
    kinds = [type(node).__name__ for node in ast.walk(expr("f(a[i] + -g(x), k=[1, 2]) -> 3"))]
    assert kinds == ["Arrow", "Call", "BinOp", "Ref", "Ref", "Neg", "Call", "Ref", "KwArg", "ListExpr",
                     "Num", "Num", "Num"]


def test_walk_does_not_recurse():
    node = ast.Num(1, "1")
    for _ in range(50_000):
        node = ast.Neg(node)
    assert sum(1 for _ in ast.walk(node)) == 50_001


def test_visitor_dispatches_on_the_class_and_descends_by_default():
    class Names(ast.Visitor):
        def __init__(self):
            self.seen = []

        def visit_Ref(self, node):
            self.seen.append(node.head.text)
            self.generic_visit(node)  # and into its indexes

        def visit_Comprehension(self, node):  # its body is not visited
            self.visit(node.iterable)

    names = Names()
    assert names.visit(expr("a * f(b[c], for l in m.levels: z, k=-d)")) is None
    assert names.seen == ["a", "b", "c", "m", "d"]

    class Total(ast.Visitor):
        def visit_Num(self, node):
            return node.value

        def visit_BinOp(self, node):
            return self.visit(node.left) + self.visit(node.right)

    assert Total().visit(expr("1 + 2 + 3")) == 6


@pytest.mark.parametrize("nest", [
    lambda n: "[" * n + "1" + "]" * n,
    lambda n: "-" * n + "1",
    lambda n: "2 * (" * n + "1" + ")" * n,
    lambda n: "f(" * n + "1" + ")" * n,
    lambda n: "f(k=" * n + "1" + ")" * n,
    lambda n: "a[" * n + "1" + "]" * n,
], ids=["list", "neg", "product", "call", "kwarg", "index"])
def test_the_formatter_prints_the_deepest_expression_the_parser_accepts(nest):
    deepest = _deepest(lambda n: f"kdlang 1\nloss x = {nest(n)}\n")
    assert MAX_DEPTH // 3 <= deepest <= MAX_DEPTH
    recipe = parse(f"kdlang 1\nloss x = {nest(deepest)}\n")
    assert parse(format_recipe(recipe)) == recipe


def _deepest(text_of) -> int:
    """The largest nesting `n` whose `text_of(n)` parses (nesting only fails past some depth)."""
    low, high = 1, MAX_DEPTH + 1  # text_of(low) parses, text_of(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _parses(text_of(middle)) else (low, middle)
    return low


def _parses(text: str) -> bool:
    try:
        parse(text)
    except SyntaxProblem:
        return False
    return True
