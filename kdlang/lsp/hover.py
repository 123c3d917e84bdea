"""Hover: what a name or call in a recipe stands for, in the words the checker and library use.

- a tap: its layer's output shape per sample (the shape pass's, else traced from the model);
- a model: its library description, input, parameter count, the stages that train it;
- a loss, schedule or other library call: formula, paper and defaults (the registries' text);
- a schedule (declared or written inline): its value over each stage that uses it;
- a keyword argument: its default; any other declared name: its declaration and where it is used.
"""

from __future__ import annotations

from typing import Any

import attrs

from kdlang.graph import evaluate
from kdlang.graph.symbols import Decl, a_kind
from kdlang.library.schedules import Schedule
from kdlang.lsp import library_docs, navigation
from kdlang.lsp.analysis import Analysis
from kdlang.lsp.locate import spot
from kdlang.lsp.positions import contains
from kdlang.source import Span
from kdlang.syntax import ast
from kdlang.syntax.formatter import format_statement

SAMPLES = 5  # epochs at which a schedule's value is shown: start, quarters, end


@attrs.frozen
class Answer:
    markdown: str
    span: Span


def hover(analysis: Analysis, line: int, col: int) -> Answer | None:
    found = navigation.at(analysis.occurrences, analysis.file, line, col)
    if found is not None:
        text = declared(analysis, found.key)
        return Answer(text, found.span) if text else None
    where = spot(analysis.statements, analysis.file, line, col)
    if where is None:
        return None
    if isinstance(where.statement, ast.Tap) and contains(where.statement.layer.span, line, col):
        return Answer(declared(analysis, where.statement.name.text) or "", where.statement.layer.span)
    kwarg = where.innermost(ast.KwArg)
    if kwarg is not None and contains(kwarg.name.span, line, col):
        return _keyword(analysis, where, kwarg)
    call = where.innermost(ast.Call)
    if call is not None and contains(call.func.span, line, col):
        return _call(analysis, where, call)
    return None


# ---- declared names -------------------------------------------------------------------------


def declared(analysis: Analysis, key: str) -> str | None:
    decl = analysis.symbols.decls.get(key)
    if decl is None:
        return _level(analysis, key)
    lines = ["```kd", format_statement(decl.node) if decl.kind != "stage" else _stage_header(decl.node), "```"]
    explain = _EXPLAIN.get(decl.kind)
    if explain is not None:
        lines += [line for line in explain(analysis, decl) if line is not None]
    else:
        lines.append(f"{a_kind(decl.kind)}")
    return "\n".join(lines)


def _model(analysis: Analysis, decl: Decl) -> list[str | None]:
    callee = library_docs.model(decl.node.source.name)
    out: list[str | None] = [callee.doc.split("\n")[0] if callee is not None else None]
    built_in_pass = analysis.shapes.models.get(decl.name) if analysis.shapes is not None else None
    count: int | None
    shape: tuple | None
    if built_in_pass is not None:
        count = sum(p.numel() for p in built_in_pass.module.parameters())
        shape = tuple(built_in_pass.input_shape)
    else:
        built = analysis.model_taps.for_declaration(decl.node, analysis.symbols)
        count, shape = (built.parameters, built.input_shape) if built is not None else (None, None)
    if count is not None:
        out.append(f"- parameters: {count:,}")
        out.append(f"- inputs: {_shape(shape)}")
    out.append(_stages_line(analysis, decl.key))
    return out


def _tap(analysis: Analysis, decl: Decl) -> list[str | None]:
    shape = analysis.shapes.tensors.get(decl.name) if analysis.shapes is not None else None
    kind = None
    model = analysis.symbols.lookup(decl.node.model.text)
    if model is not None and model.kind == "model":
        built = analysis.model_taps.for_declaration(model.node, analysis.symbols)
        info = _tap_info(built.taps, decl.node.layer.text) if built is not None else None
        if info is not None:
            shape = shape if shape is not None else info.shape
            kind = info.kind
    if shape is None:
        return ["shape: unknown (the layer is not found, or the model cannot be built; see the diagnostics)"]
    return [f"- shape per sample: **{_shape(shape)}**" + (f" (output of a `{kind}`)" if kind else "")]


def _schedule(analysis: Analysis, decl: Decl) -> list[str | None]:
    try:
        value = evaluate.as_schedule(evaluate.value(decl.node.value, analysis.symbols))
    except Exception:  # not a static value: the diagnostics say why
        return []
    return _over_stages(analysis, value, _stages_reading(analysis, decl.key))


def _computed(analysis: Analysis, decl: Decl) -> list[str | None]:
    out: list[str | None] = []
    shape = analysis.shapes.tensors.get(decl.key) if analysis.shapes is not None else None
    if shape is not None:
        out.append(f"- shape per sample: **{_shape(shape)}**")
    stages = [decl.scope] if decl.scope else _stages_reading(analysis, decl.key)
    if stages:
        out.append("- computed in stage " + ", ".join(f"`{s}`" for s in stages))
    called = dict.fromkeys(node.name for node in ast.walk(decl.node.value) if isinstance(node, ast.Call))
    for name in called:
        callee = library_docs.expression_callee(name)
        if callee is not None and callee.kind == "loss":
            summary = callee.doc.split("\n")[0].split(": ", 1)[-1]
            out.append(f"- `{name}`: {summary}; defaults {library_docs.keywords_text(callee.keywords)}")
    return out


def _granularity(analysis: Analysis, decl: Decl) -> list[str | None]:
    node = decl.node
    levels = node.levels or _mirrored_levels(analysis, node)
    out: list[str | None] = []
    for level in levels:
        out.append(f"- level `{level.name.text}`: " + ", ".join(f"`{k.name.text}={_text(k.value)}`" for k in level.kwargs)
                   + _level_shapes(analysis, f"{decl.name}.{level.name.text}"))
    out.append(_stages_line(analysis, decl.key))
    return out


def _stage(analysis: Analysis, decl: Decl) -> list[str | None]:
    graph = analysis.graph
    if graph is None:
        return []
    out: list[str | None] = []
    for label, names in (("trains", graph.trained_in(decl.name)), ("evaluates", graph.evaluated_in(decl.name)),
                         ("losses", [k.split(".")[-1] for k in graph.stage_losses(decl.name)])):
        if names:
            out.append(f"- {label}: " + ", ".join(f"`{n}`" for n in names))
    return out


def _data(analysis: Analysis, decl: Decl) -> list[str | None]:
    callee = library_docs.data_set(decl.node.source.name)
    return [callee.doc] if callee is not None else []


def _branch(analysis: Analysis, decl: Decl) -> list[str | None]:
    out: list[str | None] = []
    if analysis.shapes is not None:
        out += [f"- `{key}`: **{_shape(shape)}**" for key, shape in analysis.shapes.tensors.items()
                if key.startswith(decl.name + ".")]
    out.append(_stages_line(analysis, decl.key))
    return out


_EXPLAIN: dict[str, Any] = {"model": _model, "tap": _tap, "schedule": _schedule, "loss": _computed,
                            "excite": _computed, "granularity": _granularity, "stage": _stage, "data": _data,
                            "branch": _branch}


def _level(analysis: Analysis, key: str) -> str | None:
    granularity, _, name = key.partition(".")
    decl = analysis.symbols.lookup(granularity)
    if decl is None or decl.kind != "granularity":
        return None
    level = next((lv for lv in decl.node.levels if lv.name.text == name), None)
    if level is None:
        return None
    return "\n".join(["```kd", format_statement(level), "```", f"a level of granularity `{granularity}`"
                      + _level_shapes(analysis, key)])


def _level_shapes(analysis: Analysis, key: str) -> str:
    if analysis.shapes is None:
        return ""
    parts = [f"{out} {_shape(analysis.shapes.tensors[f'{key}.{out}'])}" for out in ("code", "logits")
             if f"{key}.{out}" in analysis.shapes.tensors]
    return f" ({', '.join(parts)})" if parts else ""


def _mirrored_levels(analysis: Analysis, node: ast.Granularity) -> tuple:
    seen = set()
    while node.mirrors is not None and node.mirrors.text not in seen:
        seen.add(node.mirrors.text)
        decl = analysis.symbols.lookup(node.mirrors.text)
        if decl is None or decl.kind != "granularity":
            return ()
        node = decl.node
        if node.levels:
            return node.levels
    return ()


# ---- calls and keywords ---------------------------------------------------------------------


def _call(analysis: Analysis, where: Any, call: ast.Call) -> Answer | None:
    callee = library_docs.callee(call.name, library_docs.context_word(where.statement))
    if callee is None:
        return None
    text = callee.doc
    if callee.kind == "schedule":
        try:
            value = evaluate.as_schedule(evaluate.value(call, analysis.symbols))
        except Exception:
            value = None
        if value is not None:
            stages = [where.stage.name.text] if where.stage is not None else \
                _stages_reading(analysis, _declared_key(where.statement))
            text += "\n\n" + "\n".join(line for line in _over_stages(analysis, value, stages) if line)
    return Answer(text, call.func.span)


def _keyword(analysis: Analysis, where: Any, kwarg: ast.KwArg) -> Answer | None:
    calls = [n for n in where.chain if isinstance(n, ast.Call) and kwarg in n.kwargs]
    context = library_docs.context_word(where.statement)
    callee = library_docs.callee(calls[-1].name, context) if calls else library_docs.statement_keywords(context)
    key = kwarg.name.text
    if callee is None or key not in callee.keywords:
        return None
    return Answer(f"`{key}` of {callee.kind} `{callee.name}`: default `{library_docs.value_text(callee.keywords[key])}`",
                  kwarg.name.span)


# ---- schedules over stages ------------------------------------------------------------------


def _over_stages(analysis: Analysis, value: Schedule, stages: list[str]) -> list[str | None]:
    if value.constant is not None:
        return [f"- constant: {_number(value.constant)}"]
    out: list[str | None] = []
    for stage in stages:
        epochs = analysis.graph.stage_epochs(stage) if analysis.graph is not None else None
        if not isinstance(epochs, (int, float)) or epochs <= 0:
            continue
        points = sorted({epochs * i / (SAMPLES - 1) for i in range(SAMPLES)})
        low, high = value.bounds(epochs)
        cells = ", ".join(f"{_number(t)}: {_number(value(min(t, epochs)))}" for t in points)
        out.append(f"- over stage `{stage}` ({_number(epochs)} epochs), by epoch: {cells}; "
                   f"from {_number(low)} to {_number(high)}")
    return out or ["- not used by any stage with a known number of epochs"]


def _stages_reading(analysis: Analysis, key: str | None) -> list[str]:
    graph = analysis.graph
    if graph is None or key is None:
        return []
    out = []
    for stage in graph.stages:
        computed = graph.stage_losses(stage) + graph.stage_excites(stage)
        if key in computed or key in graph.upstream(computed):
            out.append(stage)
    return out


def _stages_line(analysis: Analysis, key: str) -> str | None:
    graph = analysis.graph
    if graph is None:
        return None
    trained = [s for s in graph.stages if key in graph.trained_in(s)]
    return "- trained in stage " + ", ".join(f"`{s}`" for s in trained) if trained else "- not trained by any stage"


def _declared_key(statement: object) -> str | None:
    name = getattr(statement, "name", None)
    return name.text if isinstance(name, ast.Name) else None


# ---- text ----------------------------------------------------------------------------------


def _tap_info(taps: tuple, layer: str) -> Any:
    by_name = {t.name: t for t in taps}
    if layer in by_name:
        return by_name[layer]
    base, _, call = layer.partition("#")
    return by_name.get(base) if call == "1" else None


def _stage_header(node: ast.Stage) -> str:
    return format_statement(node) + " { ... }"


def _shape(shape: Any) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def _number(x: float) -> str:
    return f"{x:.4g}"


def _text(node: Any) -> str:
    from kdlang.syntax.formatter import format_expr

    return format_expr(node)
