"""Validate a recipe's library calls against their registry entries.

Each `check_*` validates one recipe call (a data set, augmentation, model, branch, a stage's
optimizer and lr schedule) against what the library says it takes, and appends diagnostics.
The torch-backed registries are imported lazily so `kdlang check` stays cheap.
"""

from __future__ import annotations

import inspect

import attrs

from kdlang.diagnostics import error
from kdlang.graph import evaluate
from kdlang.library import catalog, extensions
from kdlang.library.optimizers import LR_SCHEDULES, OPTIMIZERS
from kdlang.library.schedules import Schedule
from kdlang.library.signatures import (
    DATA_LOADER_KWARGS,
    KEYWORD_EXAMPLES,
    STAGE_ARGS,
    Signature,
    did_you_mean,
    suggest,
)
from kdlang.syntax import ast


def check_kwargs(kwargs, signature: Signature, what: str, span, problems) -> bool:
    """Unknown keywords (with 'did you mean'), repeated and missing required ones."""
    ok, seen = True, set()
    for kwarg in kwargs:
        key = kwarg.name.text
        if key in seen:
            problems.append(error(f"`{key}=` is given twice to {what}", kwarg.name.span, hint="keep one of them"))
            ok = False
        seen.add(key)
        if key not in signature.keywords:
            problems.append(error(f"unknown keyword argument `{key}` for {what}", kwarg.name.span,
                                  hint=did_you_mean(key, signature.keywords, "accepted")))
            ok = False
    for key in signature.required_keywords:
        if key not in seen:
            problems.append(error(f"{what} needs `{key}=`", span, hint=_required_hint(signature, key)))
            ok = False
    return ok


def _required_hint(signature: Signature, key: str) -> str | None:
    example = KEYWORD_EXAMPLES.get((signature.name, key), KEYWORD_EXAMPLES.get(key))
    if example is None:
        return signature.doc or None
    return f"e.g. `{key}={example}`" + (f" ({signature.doc})" if signature.doc else "")


def _check_positional(call: ast.Call, signature: Signature, what: str, problems) -> None:
    if signature.variadic:
        return
    if len(call.args) > len(signature.positional):
        extra = call.args[len(signature.positional)]
        names = ", ".join(p.split(":")[0] for p in signature.positional) or "none"
        problems.append(error(f"too many positional arguments for {what} (it takes: {names})", extra.span,
                              hint="name the others: key=value"))


def _lookup(name: str, table, what: str, span, problems):
    if name in table:
        return table[name]
    problems.append(error(f"unknown {what} `{name}`", span, hint=did_you_mean(name, table, f"{what}s")))
    return None


def check_data(call: ast.Call, problems) -> None:
    from kdlang.library import datasets

    name = call.name
    if name not in datasets.names():
        namespace = unknown_namespace(name)
        hint = extensions.enable_hint(namespace) if namespace else did_you_mean(name, datasets.names(), "data sets")
        problems.append(error(f"unknown data set `{name}`", call.func.span, hint=hint))
        return
    accepted = {**datasets.info(name).kwargs, **DATA_LOADER_KWARGS}
    check_kwargs(call.kwargs, Signature(name, (), accepted), f"data set `{name}`", call.func.span, problems)
    _check_positional(call, Signature(name), f"data set `{name}`", problems)
    augment = call.kwarg("augment")
    if augment is not None:
        check_augmentations(augment.value, problems)


def check_augmentations(value, problems) -> None:
    from kdlang.library import datasets

    items = value.items if isinstance(value, ast.ListExpr) else None
    if items is None:
        problems.append(error("`augment=` takes a list, e.g. [crop(32, pad=4), flip()]", value.span))
        return
    for item in items:
        if not isinstance(item, ast.Call):
            problems.append(error("an augmentation is a call such as `flip()`", item.span))
            continue
        signature = datasets.AUGMENTATIONS.get(item.name)
        if signature is None:
            problems.append(error(f"unknown augmentation `{item.name}`", item.func.span,
                                  hint=did_you_mean(item.name, datasets.AUGMENTATIONS, "augmentations")))
            continue
        params = list(signature.parameters)
        for kwarg in item.kwargs:
            if kwarg.name.text not in params:
                problems.append(error(f"unknown keyword argument `{kwarg.name.text}` for `{item.name}`",
                                      kwarg.name.span, hint=did_you_mean(kwarg.name.text, params, "accepted")))
        try:
            signature.bind(*item.args, **{k.name.text: None for k in item.kwargs if k.name.text in params})
        except TypeError as exc:
            shown = signature.replace(return_annotation=inspect.Signature.empty)
            problems.append(error(f"bad arguments for augmentation `{item.name}`: {exc}", item.span,
                                  hint=f"it is called as `{item.name}{shown}`"))
            continue
        _check_plain(item, problems)


def _check_plain(item: ast.Call, problems) -> None:
    """An augmentation's arguments are values written out: numbers, strings, lists."""
    for value in [*item.args, *(k.value for k in item.kwargs)]:
        try:
            evaluate.value(value)
        except evaluate.NotStatic:
            problems.append(error(f"augmentation `{item.name}` takes values written out, not a name or a "
                                  "computed tensor", value.span, hint="e.g. `crop(32, pad=4)`"))
            return
        except (TypeError, ValueError, ArithmeticError):
            return  # the shape pass explains what the library refuses


def check_model(call: ast.Call, problems) -> None:
    from kdlang.library import models

    parts = call.name.split(".")
    if len(parts) == 2 and parts[0] not in catalog.MODEL_PREFIXES:
        _check_plugin_model(call, parts[0], parts[1], problems)
        return
    if len(parts) != 2:
        problems.append(error(f"a model comes from the zoo, torchvision or timm: `zoo.NAME(...)`, `tv.NAME(...)` "
                              f"or `timm.NAME(...)`, not `{call.name}`", call.func.span,
                              hint=_model_hint(parts[-1])))
        return
    prefix, name = parts
    if prefix == "timm" and not models.timm_available():
        problems.append(error(f"model `{call.name}` needs timm, which is not installed", call.func.head.span,
                              hint="pip install timm (or pip install 'kdlang[timm]')"))
        return
    namespace = f"{prefix}."
    known = models.names() if prefix == "zoo" else \
        [n[len(namespace):] for n in models.names(include_torchvision=prefix == "tv", include_timm=prefix == "timm")
         if n.startswith(namespace)]
    if name not in known:
        label = {"zoo": "zoo", "tv": "torchvision", "timm": "timm"}[prefix]
        problems.append(error(f"unknown {label} model `{name}`",
                              call.func.trail[0].span, hint=did_you_mean(name, known, "models")))
        return
    accepted = dict(catalog.MODEL_KWARGS)
    accepted.update({k: v for k, v in catalog.model_kwargs(call.name).items() if k not in ("num_classes",)})
    check_kwargs(call.kwargs, Signature(call.name, (), accepted), f"model `{call.name}`", call.func.span, problems)
    _check_positional(call, Signature(call.name), f"model `{call.name}`", problems)


def _check_plugin_model(call: ast.Call, namespace: str, name: str, problems) -> None:
    """`acme.segnet(...)`: a model a plugin registered, checked like a zoo model."""
    from kdlang.library import models

    if namespace not in extensions.NAMESPACES:
        problems.append(error(f"unknown model namespace `{namespace}` in `{call.name}`", call.func.head.span,
                              hint=extensions.enable_hint(namespace)))
        return
    known = [n.split(".", 1)[1] for n in models.plugin_names() if n.startswith(namespace + ".")]
    if name not in known:
        problems.append(error(f"plugin namespace `{namespace}` has no model `{name}`", call.func.trail[0].span,
                              hint=did_you_mean(name, known, "models")))
        return
    accepted = dict(catalog.MODEL_KWARGS)
    accepted.update({k: v for k, v in catalog.model_kwargs(call.name).items() if k != "num_classes"})
    check_kwargs(call.kwargs, Signature(call.name, (), accepted), f"model `{call.name}`", call.func.span, problems)
    _check_positional(call, Signature(call.name), f"model `{call.name}`", problems)


def unknown_namespace(name: str) -> str | None:
    """The namespace of a dotted library name no enabled plugin provides, else None."""
    namespace, dot, _ = name.partition(".")
    if not dot or namespace in catalog.MODEL_PREFIXES or namespace in extensions.NAMESPACES:
        return None
    return namespace


def _model_hint(name: str) -> str:
    from kdlang.library import models

    guess = suggest(name, models.names())
    return f"did you mean `zoo.{guess}`?" if guess else "see `kdlang taps --list` for the zoo"


def check_branch(call: ast.Call, problems) -> None:
    from kdlang.library import branches

    namespace = unknown_namespace(call.name)
    if namespace is not None:
        problems.append(error(f"unknown branch kind `{call.name}`", call.func.span,
                              hint=extensions.enable_hint(namespace)))
        return
    kinds = {name: kind.signature for name, kind in branches.kinds().items()}  # plugins' included
    signature = _lookup(call.name, kinds, "branch kind", call.func.span, problems)
    if signature:
        check_kwargs(call.kwargs, signature, f"branch `{call.name}`", call.func.span, problems)
        _check_positional(call, signature, f"branch `{call.name}`", problems)


def check_stage(stage: ast.Stage, problems) -> None:
    what = f"stage `{stage.name.text}`"
    # An evaluation stage runs no epochs: `epochs=` may be left out (the stages pass checks it is 0).
    signature = attrs.evolve(STAGE_ARGS, keywords={**STAGE_ARGS.keywords, "epochs": 0}) \
        if stage.evaluation_only else STAGE_ARGS
    check_kwargs(stage.kwargs, signature, what, stage.name.span, problems)
    if stage.evaluation_only:
        return  # it takes no optimizer and no lr at all: the stages pass says so, once per item
    for kind, table, label in ((ast.Optimizer, OPTIMIZERS, "optimizer"), (ast.Lr, LR_SCHEDULES, "lr schedule")):
        items = stage.of(kind)
        for extra in items[1:]:
            problems.append(error(f"{what} has more than one {label}", extra.span,
                                  hint=f"keep one; a later phase with another {label} is another stage"))
        for item in items[:1]:
            signature = _lookup(item.call.name, table, label, item.call.func.span, problems)
            if signature:
                check_kwargs(item.call.kwargs, signature, f"{label} `{item.call.name}`", item.call.func.span, problems)
                _check_positional(item.call, signature, f"{label} `{item.call.name}`", problems)
                _check_static(item.call, label, problems)


def _check_static(call: ast.Call, label: str, problems) -> None:
    """Optimizer and lr arguments are plain values: a schedule of the lr is the `lr` item's job."""
    for value in [*call.args, *(k.value for k in call.kwargs)]:
        try:
            static = evaluate.value(value)
        except (evaluate.NotStatic, TypeError, ValueError, ZeroDivisionError, RecursionError):
            static = Schedule(lambda t: 0.0)
        if isinstance(static, Schedule):
            problems.append(error(f"{label} arguments are numbers, lists or strings", value.span,
                                  hint="schedule the learning rate with the stage's `lr` item, e.g. "
                                  "`lr cosine(warmup=5)`"))
