"""The operative recipe of a run: every value it ran with and where that value came from.

Each line is `path = value  # origin`, the origin being the file position that wrote it, `--set`,
or `default` (a library default the recipe left implicit). The files as they ran follow, verbatim.
"""

from __future__ import annotations

from kdlang.graph import evaluate
from kdlang.library.signatures import LR_SCHEDULES, OPTIMIZERS, RUNTIME_ARGS, STAGE_ARGS, Signature
from kdlang.syntax import ast


def operative_recipe(recipe, overrides=()) -> str:
    program = recipe.checked.program
    overridden = {item.partition("=")[0].strip() for item in overrides}
    lines = [f"# operative recipe of {recipe.path}: every value, and where it came from"]
    lines += [f"# --set {item}" for item in overrides]
    lines.append("")
    for path, value, origin in operative_values(recipe):
        where = "--set" if path in overridden else origin
        lines.append(f"{path} = {value}  # {where}")
    for parsed in program.files:
        lines.append(f"\n# ---- {parsed.file} (as it ran)\n")
        lines.append(program.sources.get(parsed.file, ""))
    return "\n".join(lines)


def operative_values(recipe):
    """(dotted path, value, origin) for every value a run uses, defaults included."""
    from kdlang.library import datasets, losses, models
    from kdlang.lower import terms as T

    symbols = recipe.symbols
    for decl in symbols.of_kind("data"):
        call = decl.node.source
        accepted = {**datasets.info(call.name).kwargs, "batch": 64, "workers": 0}
        prefix = "data" if decl.name == "data" else f"data.{decl.name}"
        yield from _call_values(prefix, call, accepted)
    for decl in symbols.of_kind("model"):
        call = decl.node.source
        spec = recipe.plan.models[decl.name]
        yield f"model.{decl.name}", call.name, _origin(call)
        yield f"model.{decl.name}.classes", spec.classes, _origin(call.kwarg("classes")) or "default (the data's)"
        yield (f"model.{decl.name}.in_channels", spec.input_shape[0],
               _origin(call.kwarg("in_channels")) or "default (the data's)")
        name = spec.source
        extra = {k: v for k, v in models.info(name).kwargs.items() if k not in ("num_classes", "in_channels")}
        yield from _call_values(f"model.{decl.name}", call, extra, skip=("classes", "in_channels"))
    for decl in symbols.of_kind("granularity"):
        source = decl.node.mirrors.text if decl.node.mirrors is not None else decl.name
        for level, args in evaluate.level_args(symbols, decl.name).items():
            for key, value in args.items():
                written = _level_kwarg(symbols.lookup(source).node, level, key)
                origin = _origin(written) or "default"
                if source != decl.name:
                    origin = f"mirrors `{source}`: {origin}"
                yield f"granularity.{decl.name}.{level}.{key}", _show(value), origin
    for stage in recipe.stages:
        node = recipe.graph.decl(stage).node
        yield from _kwarg_values(f"stage.{stage}", node.kwargs, STAGE_ARGS.keywords, node.name.span)
        for kind, table, label in ((ast.Optimizer, OPTIMIZERS, "optimizer"), (ast.Lr, LR_SCHEDULES, "lr")):
            items = node.of(kind)
            if items:
                call = items[0].call
                yield f"stage.{stage}.{label}", call.name, _origin(call)
                yield from _call_values(f"stage.{stage}.{label}", call, table[call.name].keywords)
            elif label == "lr" and not node.evaluation_only:
                yield f"stage.{stage}.lr", "constant", "default"
        for key in recipe.graph.stage_losses(stage):
            for call in T.loss_calls(recipe.plan.terms.get(key, T.TList(()))):
                hyper = losses.info(call.fn).hyper
                for name, default in hyper.items():
                    value = call.hyper.get(name, default)
                    shown = value.text if isinstance(value, T.TScalar) and not isinstance(value.value, float) \
                        else (value.value if isinstance(value, T.TScalar) else value)
                    yield (f"loss.{key}.{call.instance.split('#')[1]}.{call.fn}.{name}", shown,
                           f"{call.span}" if name in call.hyper else "default")
    runtime = symbols.runtimes[0] if symbols.runtimes else None
    yield from _kwarg_values("runtime", runtime.kwargs if runtime else (), RUNTIME_ARGS.keywords, None)


def _call_values(prefix, call, accepted: dict, skip=()):
    yield from _kwarg_values(prefix, call.kwargs, {k: v for k, v in accepted.items() if k not in skip}, call.span)


def _kwarg_values(prefix, kwargs, accepted: dict, span):
    given = {k.name.text: k for k in kwargs}
    for key in sorted(set(accepted) | set(given)):
        if key in given:
            yield f"{prefix}.{key}", _text(given[key].value), str(given[key].span)
        elif accepted[key] is not Signature.REQUIRED:
            yield f"{prefix}.{key}", _show(accepted[key]), "default"


def _level_kwarg(node, level, key):
    for lv in getattr(node, "levels", ()):
        if lv.name.text == level:
            return next((k for k in lv.kwargs if k.name.text == key), None)
    return None


def _origin(node):
    return str(node.span) if node is not None else None


def _text(node) -> str:
    from kdlang.syntax.formatter import format_expr

    return format_expr(node)


def _show(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)
