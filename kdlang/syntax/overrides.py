"""`--set key=value`: override any recipe value by dotted path, without editing the file.

Paths: `data.batch` (the default data) or `data.NAME.KEY`, `data=CALL` / `data.NAME=CALL` (another
data set, e.g. `data=synthetic(shape=[3, 32, 32], classes=100)` for a smoke run), `model.NAME.KEY`, `stage.NAME.KEY`,
`stage.NAME.optimizer.KEY`, `stage.NAME.lr.KEY`, `schedule.NAME`, `runtime.KEY`,
`granularity.NAME.LEVEL.KEY`. The value is one value in recipe syntax (`2`, `0.1`, `"bf16"`,
`[30, 45]`, `0..3`, `f(x=1)`). A key given twice takes its last value. Overrides edit the source
text at the node's span, so diagnostics still point at real lines.
"""

from __future__ import annotations

from pathlib import Path

from kdlang.library.signatures import did_you_mean
from kdlang.syntax import ast
from kdlang.syntax.errors import SyntaxProblem
from kdlang.syntax.loader import load_path
from kdlang.syntax.parser import parse

KINDS = ("data", "model", "stage", "schedule", "runtime", "granularity")


class OverrideError(ValueError):
    pass


def apply_overrides(path: Path, overrides) -> dict:
    """{file: new text} for every file an override touches.

    Each override edits the text the ones before it left (parsed again), so a later value of a key
    replaces an earlier one and edits that overlap (`data=CALL`, then `data.batch=8`) compose instead
    of splicing into each other's spans."""
    texts: dict = {}
    for item in overrides:
        key, value = _split(item)
        program, _ = load_path(path, texts)
        if program is None:  # the recipe does not parse: checking it reports where
            break
        file, (start, end, new) = _locate(program, key.split("."), value, item)
        text = program.sources[file]
        texts[file] = text[:start] + new + text[end:]
    return texts


def _split(item: str) -> tuple[str, str]:
    """KEY=VALUE as (the key with its parts stripped, the value checked to be one value)."""
    key, sep, value = item.partition("=")
    key = ".".join(part.strip() for part in key.split("."))
    if not sep or not key:
        raise OverrideError(f"--set takes KEY=VALUE, got {item!r}")
    value = value.strip()
    _require_one_value(value, item)
    return key, value


def _require_one_value(value: str, item: str) -> None:
    """The value is pasted into the recipe's text, so it must be exactly one value there: `2 3`,
    `1)`, `1, lr=2` or a `# comment` would change more than the value they replace."""
    problem = OverrideError(f"--set {item}: {value!r} is not one recipe value (a number, \"string\", "
                            "true/false, [list], range 0..3 or call f(x=1))")
    if not value or value.endswith(","):
        raise problem
    try:
        recipe = parse(f"schedule _ = [{value}]")  # a one-item list: nothing can leak past its `]`
    except SyntaxProblem:
        raise problem from None
    wrapped = recipe.statements[0].value if len(recipe.statements) == 1 else None
    if not isinstance(wrapped, ast.ListExpr) or len(wrapped.items) != 1:
        raise problem


def _locate(program, parts, value, item):
    kind = parts[0]
    if kind not in KINDS:
        raise OverrideError(f"--set {item}: unknown kind `{kind}`; {did_you_mean(kind, KINDS, 'kinds')}")
    statements = program.statements
    if kind == "runtime":
        node = next((s for s in statements if isinstance(s, ast.Runtime)), None)
        if node is None:
            raise OverrideError(f"--set {item}: the recipe has no `runtime(...)` statement to override")
        return _kwarg_edit(program, node.kwargs, node.span, parts[1:], value, item, closing=True)
    if kind == "data" and len(parts) == 1:  # `data=synthetic(...)` swaps the default data set whole
        return _replace(program, _find(statements, "data", "data", item).source.span, value)
    if kind == "data" and len(parts) == 2 and any(
            isinstance(s, ast.Data) and s.name is not None and s.name.text == parts[1] for s in statements):
        return _replace(program, _find(statements, "data", parts[1], item).source.span, value)
    if kind == "data" and len(parts) == 2:
        parts = ["data", "data", parts[1]]
    if len(parts) < 2:
        raise OverrideError(f"--set {item}: name the {kind}, e.g. {kind}.NAME.KEY=VALUE")
    node = _find(statements, kind, parts[1], item)
    rest = parts[2:]
    if kind == "schedule":
        if rest:
            raise OverrideError(f"--set {item}: a schedule is replaced whole: schedule.{parts[1]}=EXPR")
        return _replace(program, node.value.span, value)
    if kind in ("data", "model"):
        return _kwarg_edit(program, node.source.kwargs, node.source.span, rest, value, item, closing=True)
    if kind == "granularity":
        if len(rest) != 2:
            raise OverrideError(f"--set {item}: use granularity.NAME.LEVEL.KEY=VALUE")
        level = next((lv for lv in node.levels if lv.name.text == rest[0]), None)
        if level is None:
            raise OverrideError(f"--set {item}: no level `{rest[0]}`; "
                                + did_you_mean(rest[0], [lv.name.text for lv in node.levels], "levels"))
        return _kwarg_edit(program, level.kwargs, level.span, rest[1:], value, item, closing=False)
    # stage
    if rest and rest[0] in ("optimizer", "lr"):
        items = node.of(ast.Optimizer if rest[0] == "optimizer" else ast.Lr)
        if not items:
            raise OverrideError(f"--set {item}: stage `{parts[1]}` has no {rest[0]}")
        call = items[0].call
        return _kwarg_edit(program, call.kwargs, call.span, rest[1:], value, item, closing=True)
    return _kwarg_edit(program, node.kwargs, node.name.span, rest, value, item, closing=False, stage=node)


def _find(statements, kind, name, item):
    types = {"data": ast.Data, "model": ast.Model, "stage": ast.Stage, "schedule": ast.Schedule,
             "granularity": ast.Granularity}
    found = [s for s in statements if isinstance(s, types[kind])
             and ((s.name.text if s.name else "data") == name)]
    if not found:
        names = [(s.name.text if s.name else "data") for s in statements if isinstance(s, types[kind])]
        raise OverrideError(f"--set {item}: no {kind} `{name}`; {did_you_mean(name, names, kind + 's')}")
    return found[0]


def _kwarg_edit(program, kwargs, span, rest, value, item, closing, stage=None):
    if len(rest) != 1:
        raise OverrideError(f"--set {item}: expected one keyword after the name")
    key = rest[0]
    existing = next((k for k in kwargs if k.name.text == key), None)
    if existing is not None:
        return _replace(program, existing.value.span, value)
    text = program.sources[span.file]
    if stage is not None:  # `stage s {` or `stage s(...) {`: add or extend the argument list
        start = _offset(text, stage.name.span.end_line, stage.name.span.end_col)
        if kwargs:
            end = _offset(text, kwargs[-1].span.end_line, kwargs[-1].span.end_col)
            return span.file, (end, end, f", {key}={value}")
        return span.file, (start, start, f"({key}={value})")
    if not closing:
        end = _offset(text, span.end_line, span.end_col)
        return span.file, (end, end, f" {key}={value}")
    end = _offset(text, span.end_line, span.end_col) - 1  # before the call's ')'
    separator = ", " if kwargs or text[:end].rstrip()[-1] != "(" else ""
    return span.file, (end, end, f"{separator}{key}={value}")


def _replace(program, span, value):
    text = program.sources[span.file]
    return span.file, (_offset(text, span.line, span.col), _offset(text, span.end_line, span.end_col), value)


def _offset(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[: line - 1]) + col - 1
