"""What the library says about a name a recipe calls: its keywords with defaults and a short text.

Read from the registries the checker validates calls against (`kdlang.library`), so hover and
completion can never offer a keyword the checker would refuse. Which registry a name belongs to
depends on where it is called: `linear` is a branch kind after `branch ... =`, a schedule in a loss.
"""

from __future__ import annotations

from typing import Any

import attrs

from kdlang.library import catalog, extensions
from kdlang.library.optimizers import LR_SCHEDULES, OPTIMIZERS
from kdlang.library.signatures import (
    COMBINATORS,
    DATA_LOADER_KWARGS,
    LEVEL_ARGS,
    REDUCERS,
    RUNTIME_ARGS,
    STAGE_ARGS,
    Signature,
)
from kdlang.syntax import ast

REQUIRED = Signature.REQUIRED


@attrs.frozen
class Callee:
    """A callable as a recipe sees it."""

    name: str
    kind: str  # "loss", "schedule", "model", "data set", "optimizer", "lr schedule", "branch", ...
    keywords: dict  # keyword -> default (`REQUIRED` when it has none)
    doc: str  # Markdown


def value_text(value: Any) -> str:
    """A default as a recipe spells it."""
    if value is REQUIRED:
        return "required"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def keywords_text(keywords: dict) -> str:
    return ", ".join(f"`{k}={value_text(v)}`" for k, v in keywords.items()) or "none"


def context_word(statement: object) -> str:
    """The keyword that starts `statement` (`optimizer`, `model`, `loss`...): what its calls mean."""
    return _WORDS.get(type(statement), "")


_WORDS = {ast.Optimizer: "optimizer", ast.Lr: "lr", ast.Branch: "branch", ast.Model: "model", ast.Data: "data",
          ast.Stage: "stage", ast.Runtime: "runtime", ast.Granularity: "level"}


def callee(name: str, context: str) -> Callee | None:
    """The callable `name` means in a statement starting with keyword `context`, None if unknown."""
    if context == "optimizer":
        return _signature(OPTIMIZERS.get(name), "optimizer")
    if context == "lr":
        return _signature(LR_SCHEDULES.get(name), "lr schedule")
    if context == "branch":
        return _signature(catalog.BRANCHES.get(name) or _plugin_branch(name), "branch")
    if context == "model":
        return model(name)
    if context == "data":
        return data_set(name)
    return expression_callee(name)


def expression_callee(name: str) -> Callee | None:
    """A function inside a loss, excitation or schedule expression."""
    if name in catalog.loss_names():
        return loss(name)
    if name in catalog.schedule_functions():
        return _signature(catalog.schedule_functions()[name], "schedule")
    if name in REDUCERS or name in COMBINATORS:
        signature = COMBINATORS.get(name) or REDUCERS[name]
        doc = "; ".join(s.doc for s in (REDUCERS.get(name), COMBINATORS.get(name)) if s is not None)
        return Callee(name, "combinator", dict(signature.keywords), f"**{name}**(...): {doc}")
    return None


def loss(name: str) -> Callee:
    info = catalog.loss_info(name)
    lines = [f"**loss `{name}`**: {info.summary}", ""]
    if info.paper:
        lines += [f"*{info.paper}*", ""]
    if info.formula:
        lines += ["```text", info.formula, "```", ""]
    inputs = f"{info.inputs}" + (" (a list of layers is accepted)" if info.multi else "")
    lines.append(f"- inputs: {inputs}" + (f"; {info.shape_rule}" if info.shape_rule else ""))
    if info.needs:
        lines.append("- reads from the batch: " + ", ".join(f"`{'label' if n == 'labels' else n}`" for n in info.needs))
    lines.append(f"- defaults: {keywords_text(info.hyper)}")
    if info.trainable:
        lines.append("- has trainable parts, sized from the input shapes")
    return Callee(name, "loss", dict(info.hyper), "\n".join(lines))


def model(written: str) -> Callee | None:
    from kdlang.library import models

    source = written[len("zoo."):] if written.startswith("zoo.") else written
    try:
        info = models.info(source)
    except Exception:  # not a model name (yet): the checker says so
        return None
    own = {k: v for k, v in info.kwargs.items() if k not in ("num_classes", "in_channels")}
    keywords = {**catalog.MODEL_KWARGS, **own}  # classes and channels: the data set's unless given
    doc = (f"**model `{written}`** ({info.family}): {info.description}\n\n"
           f"- input: {'x'.join(map(str, info.input_size))} (classes and in_channels: the data set's unless given)\n"
           f"- keywords: {keywords_text(keywords)}")
    return Callee(written, "model", keywords, doc)


def data_set(name: str) -> Callee | None:
    from kdlang.library import datasets

    try:
        info = datasets.info(name)
    except Exception:
        return None
    keywords = {**info.kwargs, **DATA_LOADER_KWARGS}
    doc = (f"**data set `{name}`**: {info.num_classes} classes, images "
           f"{'x'.join(map(str, info.input_shape))}\n\n- keywords: {keywords_text(keywords)}")
    return Callee(name, "data set", keywords, doc)


def statement_keywords(context: str) -> Callee | None:
    """The keywords a statement itself takes: `stage NAME(...)`, `runtime(...)`, a granularity's `level`."""
    signature = {"stage": STAGE_ARGS, "runtime": RUNTIME_ARGS, "level": LEVEL_ARGS}.get(context)
    return _signature(signature, context) if signature is not None else None


def _signature(signature: Signature | None, kind: str) -> Callee | None:
    if signature is None:
        return None
    positional = ", ".join(p.split(":")[0] for p in signature.positional)
    head = f"**{kind} `{signature.name}`**" + (f"({positional}, ...)" if positional else "")
    doc = head + (f": {signature.doc}" if signature.doc else "") + f"\n\n- keywords: {keywords_text(signature.keywords)}"
    return Callee(signature.name, kind, dict(signature.keywords), doc)


def _plugin_branch(name: str) -> Signature | None:
    entry = extensions.BRANCHES.get(name)
    return entry.signature if entry is not None else None
