"""`verify(program)`: the IR's invariants, checked between passes (like `torch.fx.Graph.lint`).

A failure is a bug in a pass, never in a recipe: it raises `IRError` naming the broken invariant.
Tests run it after every pass; `kdlang compile --debug` does too.
"""

from __future__ import annotations

from typing import Iterator

from kdlang.ir import nodes as N
from kdlang.ir import shapes as S
from kdlang.ir import terms as T


class IRError(AssertionError):
    """An IR invariant does not hold: a kdlang bug."""


def verify(program: N.Program) -> None:
    """Structure always; shapes too once the shape pass has annotated the program."""
    problems = list(_structure(program))
    if S.KEY in program.meta:
        problems += list(_shapes(program))
    if problems:
        raise IRError("the IR is malformed:\n  " + "\n  ".join(problems))


def _structure(program: N.Program) -> Iterator[str]:
    components = program.components
    if sorted(program.flow) != sorted(components):
        yield "the data-flow order does not list each component once"
    seen: list[str] = []
    for name in program.flow:
        component = components.get(name)
        if component is None:
            continue
        if component.name != name:
            yield f"component {name!r} is filed under another name ({component.name!r})"
        if not isinstance(component, N.Model):
            model = component.tap.model
            if components.get(model.name) is not model:
                yield f"{component.kind} {name!r} taps {model.name!r}, which is not this program's model"
            elif model.name not in seen:
                yield f"{component.kind} {name!r} comes before the model it reads ({model.name!r})"
        seen.append(name)
    for key, tap in program.taps.items():
        if key != tap.name or components.get(tap.model.name) is not tap.model:
            yield f"tap {key!r} does not point at one of this program's models"
    for stage in program.stages:
        if program.data.get(stage.data.name) is not stage.data:
            yield f"stage {stage.name!r} runs on data that is not this program's"
        for name in (*stage.trains, *stage.evaluates):
            if name not in components:
                yield f"stage {stage.name!r} names {name!r}, which is not a component"
        if stage.evaluation_only and (stage.trains or stage.losses or stage.optimizer is not None):
            yield f"evaluation stage {stage.name!r} trains something"
        if not stage.evaluation_only and (stage.optimizer is None or stage.epochs is None):
            yield f"training stage {stage.name!r} has no optimizer or no epoch count"
        for loss in stage.losses:
            if program.losses.get(loss.key) is not loss:
                yield f"stage {stage.name!r} optimises loss {loss.key!r}, which is not this program's"
        for excite in stage.excites:
            if program.excites.get(excite.key) is not excite:
                yield f"stage {stage.name!r} computes excitation {excite.key!r}, which is not this program's"
        for key in _stage_tensors(stage):
            if _producer(program, key) is None:
                yield f"stage {stage.name!r} reads tensor {key!r}, which nothing produces"
    instances = [call.instance for loss in program.losses.values() for call in T.loss_calls(loss.term)]
    if len(instances) != len(set(instances)):
        yield "two loss calls share an instance name"


def _shapes(program: N.Program) -> Iterator[str]:
    shapes = S.of(program)
    for stage in program.stages:
        for key in _stage_tensors(stage):
            if key not in shapes.tensors:
                yield f"stage {stage.name!r} reads tensor {key!r}, which has no inferred shape"
    for name in shapes.models:
        if name not in program.components:
            yield f"the shape pass built {name!r}, which is not a model of the program"


def _stage_tensors(stage: N.Stage) -> list[str]:
    keys: list[str] = []
    computed: tuple[N.Computed, ...] = (*stage.losses, *stage.excites)
    for item in computed:
        keys += T.tensor_keys(item.term)
    return list(dict.fromkeys(keys))


def _producer(program: N.Program, key: str) -> str | None:
    """The declaration that produces tensor `key` (a tap, excitation, level or branch output)."""
    if key in program.taps or key in program.excites:
        return key
    owner = key.split(".")[0]
    component = program.components.get(owner)
    if isinstance(component, N.Granularity):
        parts = key.split(".")
        levels = {level.name for level in component.levels}
        return owner if len(parts) == 3 and parts[1] in levels and parts[2] in ("code", "logits") else None
    if isinstance(component, N.Branch):
        return owner if key.split(".", 1)[1] in component.outputs else None
    return None
