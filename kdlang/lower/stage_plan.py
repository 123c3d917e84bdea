"""What one stage runs, decided once from the IR: components, taps, heads, order, frozen side.

A `StagePlan` is plain data: the stage module executes it and the IR printer prints it, and
neither looks anything up in the program while a batch runs.
"""

from __future__ import annotations

from typing import Iterable

import attrs

from kdlang.ir import nodes as N
from kdlang.ir import shapes as S
from kdlang.ir import terms as T

OUTPUT = "output"


@attrs.frozen
class StagePlan:
    stage: N.Stage
    order: tuple[str, ...]  # the components it runs, in run order: the frozen side, then the rest
    kinds: dict[str, str] = attrs.field(eq=False)  # component -> model | granularity | branch
    trained: frozenset[str]
    frozen_side: frozenset[str]  # components that read nothing trained: run under inference mode
    taps_by_model: dict[str, dict[str, str]] = attrs.field(eq=False)  # model -> {tensor key: layer path}
    inputs: dict[str, str] = attrs.field(eq=False)  # granularity/branch -> the tap key it reads
    produces: dict[str, frozenset[str]] = attrs.field(eq=False)  # component -> the tensor keys it outputs
    reads: dict[str, tuple[str, ...]] = attrs.field(eq=False)  # tensor key -> the keys it is computed from
    heads: tuple[tuple[str, str], ...]  # (head, tensor key) of every evaluated classifier
    trained_heads: tuple[tuple[str, str], ...]  # those the stage trains (`select best` reads them)
    owners: dict[str, frozenset[str]] = attrs.field(eq=False)  # component -> the components it reads (itself too)
    shapes: dict[str, S.Shape] = attrs.field(eq=False)  # tensor key -> shape, for what the stage reads
    # frozen models whose logits the stage never reads: their forward stops after their last tap
    truncated: frozenset[str] = frozenset()

    @property
    def losses(self) -> tuple[N.Loss, ...]:
        return self.stage.losses

    @property
    def excites(self) -> tuple[N.Excite, ...]:
        return self.stage.excites

    def required(self, keys: Iterable[str]) -> set[str]:
        """`keys` plus everything they are computed from."""
        return _closure(self.reads, keys)

    def feeding(self, keys: Iterable[str]) -> list[str]:
        """The components that feed `keys`, in run order."""
        wanted = self.required(keys)
        return [name for name in self.order if self.produces[name] & wanted]

    def consumed_keys(self) -> set[str]:
        """Every tensor the stage's losses and excitations read, with what they are computed from."""
        keys: list[str] = []
        computed: tuple[N.Computed, ...] = (*self.stage.losses, *self.stage.excites)
        for item in computed:
            keys += T.tensor_keys(item.term)
        return self.required(keys)


def plan_stage(program: N.Program, stage: N.Stage) -> StagePlan:
    shapes = S.of(program)
    reads = _reads(program, shapes)
    produces = {name: frozenset(_produces(program, shapes, name)) for name in program.components}
    trained = frozenset(stage.trains)
    heads = _heads(program, shapes, stage, evaluated=True)
    needed: list[str] = [key for _, key in heads]
    computed: tuple[N.Computed, ...] = (*stage.losses, *stage.excites)
    for item in computed:
        needed += T.tensor_keys(item.term)
    wanted = _closure(reads, needed)
    flow = [n for n in program.flow if produces[n] & wanted]
    owners = {name: frozenset(program.upstream(name)) for name in flow}
    frozen = frozenset(n for n in flow if not (owners[n] & trained))
    # the frozen side first: its outputs are ready before anything trained runs, and nothing it
    # computes waits in memory behind the trained side's activations (it reads nothing trained)
    order = tuple([n for n in flow if n in frozen] + [n for n in flow if n not in frozen])
    taps = _taps_for(program, wanted)
    return StagePlan(
        stage=stage, order=order, kinds={n: program.kind(n) for n in order}, trained=trained,
        frozen_side=frozen,
        taps_by_model=taps,
        inputs={n: _tap(program.components[n]).name for n in order if program.kind(n) != "model"},
        produces={n: produces[n] for n in order}, reads=reads, heads=heads,
        trained_heads=_heads(program, shapes, stage, evaluated=False), owners=owners,
        shapes={k: v for k, v in shapes.tensors.items() if k in wanted},
        truncated=frozenset(n for n in frozen if program.kind(n) == "model" and OUTPUT not in taps.get(n, {}).values()))


def _tap(component: N.Component) -> N.Tap:
    """The tap a granularity or branch reads (a model reads none)."""
    assert not isinstance(component, N.Model), f"model {component.name!r} reads no tap"
    return component.tap


def _reads(program: N.Program, shapes: S.Shapes) -> dict[str, tuple[str, ...]]:
    """Tensor key -> the keys it is computed from: an excitation's inputs, a component output's tap."""
    reads = {key: tuple(T.tensor_keys(excite.term)) for key, excite in program.excites.items()}
    for key in shapes.tensors:
        owner = key.split(".")[0]
        component = program.components.get(owner)
        if component is not None and not isinstance(component, N.Model) and key not in program.excites:
            reads[key] = (component.tap.name,)
    return reads


def _closure(reads: dict[str, tuple[str, ...]], keys: Iterable[str]) -> set[str]:
    """`keys` and, transitively, every key `reads` says they are computed from."""
    out: set[str] = set()
    todo = list(keys)
    while todo:
        key = todo.pop()
        if key not in out:
            out.add(key)
            todo.extend(reads.get(key, ()))
    return out


def _produces(program: N.Program, shapes: S.Shapes, name: str) -> set[str]:
    if program.kind(name) == "model":
        return {tap.name for tap in program.taps.values() if tap.model.name == name} | {f"{name}:{OUTPUT}"}
    return {key for key in shapes.tensors if key.startswith(name + ".")}


def _taps_for(program: N.Program, wanted: set[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for tap in program.taps.values():
        if tap.name in wanted:
            out.setdefault(tap.model.name, {})[tap.name] = tap.layer
    for model in program.of_kind("model"):
        if f"{model.name}:{OUTPUT}" in wanted:
            out.setdefault(model.name, {})[f"{model.name}:{OUTPUT}"] = OUTPUT
    return out


def _heads(program: N.Program, shapes: S.Shapes, stage: N.Stage, evaluated: bool) -> tuple[tuple[str, str], ...]:
    """(head name, tensor key) of every classifier a stage evaluates for accuracy: those it trains
    (in data-flow order; the first one decides `select best`), then, when `evaluated`, those its
    `evaluate` items name (in the order written)."""
    classes = shapes.stage_classes(stage)
    trained = program.order(stage.trains)
    names = trained + ([c for c in stage.evaluates if c not in trained] if evaluated else [])
    heads: list[tuple[str, str]] = []
    for name in names:
        component = program.components[name]
        if isinstance(component, N.Model):
            heads.append((name, f"{name}:{OUTPUT}"))
        elif isinstance(component, N.Granularity) and component.decoders:
            heads += [(f"{name}.{level.name}", f"{name}.{level.name}.logits") for level in component.levels]
        elif isinstance(component, N.Branch) and shapes.tensors.get(f"{name}.out") == (classes,):
            heads.append((name, f"{name}.out"))
    return tuple(heads)
