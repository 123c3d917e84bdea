"""The operative recipe of a run: every value it ran with and where that value came from.

Each line is `path = value  # origin`, the origin being the file position that wrote it, `--set`,
or `default` (a library default the recipe left implicit). The files as they ran follow, verbatim.
"""

from __future__ import annotations

from kdlang.ir import nodes as N
from kdlang.ir import terms as T
from kdlang.library.signatures import LR_SCHEDULES, OPTIMIZERS, RUNTIME_ARGS, STAGE_ARGS, Signature


def operative_recipe(recipe, overrides=()) -> str:
    program = recipe.program
    overridden = {item.partition("=")[0].strip() for item in overrides}
    lines = [f"# operative recipe of {recipe.path}: every value, and where it came from"]
    lines += [f"# --set {item}" for item in overrides]
    lines.append("")
    for path, value, origin in operative_values(recipe):
        where = "--set" if path in overridden else origin
        lines.append(f"{path} = {value}  # {where}")
    for file, text in program.sources.items():
        lines.append(f"\n# ---- {file} (as it ran)\n")
        lines.append(text)
    return "\n".join(lines)


def operative_values(recipe):
    """(dotted path, value, origin) for every value a run uses, defaults included."""
    from kdlang.library import datasets, losses, models

    program = recipe.program
    for data in program.data.values():
        accepted = {**datasets.info(data.call.name).kwargs, **datasets.DATA_LOADER_KWARGS}
        prefix = "data" if data.name == "data" else f"data.{data.name}"
        yield from _call_values(prefix, data.call, accepted)
    for model in program.of_kind("model"):
        call, built = model.call, recipe.shapes.models[model.name]
        yield f"model.{model.name}", call.name, str(call.span)
        yield f"model.{model.name}.classes", built.classes, _origin(call.kwargs.get("classes")) or "default (the data's)"
        yield (f"model.{model.name}.in_channels", built.input_shape[0],
               _origin(call.kwargs.get("in_channels")) or "default (the data's)")
        extra = {k: v for k, v in models.info(model.source).kwargs.items() if k not in ("num_classes", "in_channels")}
        yield from _call_values(f"model.{model.name}", call, extra, skip=("classes", "in_channels"))
    for granularity in program.of_kind("granularity"):
        source = program.components[granularity.mirrors] if granularity.mirrors else granularity
        for level in granularity.levels:
            for key in ("code", "T", "hidden"):
                written = source.written.get((level.name, key))
                origin = _origin(written) or "default"
                if source is not granularity:
                    origin = f"mirrors `{source.name}`: {origin}"
                shown = _show(written.value if written is not None else getattr(level, key))
                yield f"granularity.{granularity.name}.{level.name}.{key}", shown, origin
    for stage in program.stages:
        yield from _kwarg_values(f"stage.{stage.name}", stage.written, STAGE_ARGS.keywords)
        for call, table, label in ((stage.optimizer, OPTIMIZERS, "optimizer"), (stage.lr, LR_SCHEDULES, "lr")):
            if call is not None:
                yield f"stage.{stage.name}.{label}", call.name, str(call.span)
                yield from _call_values(f"stage.{stage.name}.{label}", call, table[call.name].keywords)
            elif label == "lr" and not stage.evaluation_only:
                yield f"stage.{stage.name}.lr", "constant", "default"
        for loss in stage.losses:
            for call in T.loss_calls(loss.term):
                for name, default in losses.info(call.fn).hyper.items():
                    value = call.hyper.get(name, default)
                    shown = value.text if isinstance(value, T.TScalar) and not isinstance(value.value, float) \
                        else (value.value if isinstance(value, T.TScalar) else value)
                    yield (f"loss.{loss.key}.{call.instance.split('#')[1]}.{call.fn}.{name}", shown,
                           f"{call.span}" if name in call.hyper else "default")
    yield from _kwarg_values("runtime", program.runtime, RUNTIME_ARGS.keywords)


def _call_values(prefix, call: N.Call, accepted: dict, skip=()):
    yield from _kwarg_values(prefix, call.kwargs, {k: v for k, v in accepted.items() if k not in skip})


def _kwarg_values(prefix, given: dict, accepted: dict):
    """Each keyword as written (its text and position), else its default."""
    for key in sorted(set(accepted) | set(given)):
        if key in given:
            yield f"{prefix}.{key}", given[key].text, str(given[key].span)
        elif accepted[key] is not Signature.REQUIRED:
            yield f"{prefix}.{key}", _show(accepted[key]), "default"


def _origin(value) -> str | None:
    return str(value.span) if value is not None else None


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
