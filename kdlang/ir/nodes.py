"""The resolved IR: a checked recipe as frozen, typed records, every static value evaluated once.

What the checker has proven sound, stated once for every later layer: references are resolved to
nodes (a tap holds its `Model`, a stage its `Data` and `Loss` nodes), values are Python values
that keep how and where the recipe wrote them (`Value`), defaults are filled in, and loss and
excitation expressions are term trees (`kdlang.ir.terms`). Lowering, the runtime, the IR printer
and the operative recipe read this and never the AST.

Passes add facts without rebuilding records: a `Program`'s `meta` (like `torch.fx.Node.meta`)
holds what the shape pass inferred (`kdlang.ir.shapes.Shapes`).
"""

from __future__ import annotations

from typing import Any, Iterable, Union

import attrs

from kdlang.diagnostics import SourceMap
from kdlang.source import Span
from kdlang.ir.terms import Term


@attrs.frozen
class Value:
    """A static value: what it evaluated to, how the recipe wrote it, and where (for a keyword
    argument, the whole `key=value`)."""

    value: Any
    text: str
    span: Span | None = None


@attrs.frozen
class Call:
    """A library call (a data set, model, branch, optimizer, lr schedule, augmentation) with its
    arguments evaluated; only the arguments the recipe wrote, defaults are the library's."""

    name: str
    args: tuple[Value, ...]
    kwargs: dict[str, Value] = attrs.field(eq=False)
    span: Span

    def values(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.kwargs.items()}

    def arg_values(self) -> list[Any]:
        return [a.value for a in self.args]

    def get(self, key: str, default: Any = None) -> Any:
        found = self.kwargs.get(key)
        return default if found is None else found.value


@attrs.frozen
class Checkpoint:
    """`from "file"` (path) or `from stage` (a stage of this recipe trains it first). `key`: the dotted
    path of the state dict inside the file (`from "x.pt" key="model.ema"`), None for the file's top."""

    path: str | None
    stage: str | None
    span: Span
    key: str | None = None


@attrs.frozen
class Data:
    name: str
    call: Call  # the data set and its own arguments (augmentation lists excluded)
    augment: tuple[Call, ...]
    test_augment: tuple[Call, ...]
    batch: int
    workers: int
    span: Span


@attrs.frozen
class Model:
    name: str
    call: Call
    source: str  # the library's name: `resnet20` for `zoo.resnet20`, `tv.resnet18` as written
    data: Data | None  # what it sees: the data of the first stage that uses it, else the default
    checkpoint: Checkpoint | None
    span: Span
    kind = "model"


@attrs.frozen
class Tap:
    name: str
    model: Model
    layer: str  # a module path, possibly with `#k`, or `output`
    span: Span
    layer_span: Span


@attrs.frozen
class Level:
    name: str
    code: int | None
    T: float
    hidden: int | None


@attrs.frozen
class Granularity:
    name: str
    tap: Tap
    levels: tuple[Level, ...]  # its own, or those of the granularity it mirrors
    mirrors: str | None
    written: dict[tuple[str, str], Value] = attrs.field(eq=False)  # (level, key) -> Value, own levels as written
    logits_read: bool  # a loss or excitation reads `G.LEVEL.logits`
    decoders: bool  # it builds decoders: its logits are read, or a stage evaluates it
    checkpoint: Checkpoint | None
    span: Span
    tap_span: Span  # where it names its tap
    kind = "granularity"


@attrs.frozen
class Branch:
    name: str
    tap: Tap
    call: Call  # the branch kind (`linear`, `mlp`, `paraphraser`) and its arguments
    outputs: tuple[str, ...]
    checkpoint: Checkpoint | None
    span: Span
    kind = "branch"


Component = Union[Model, Granularity, Branch]


@attrs.frozen
class Excite:
    key: str  # `stage.name` when declared inside a stage
    name: str
    term: Term
    span: Span


@attrs.frozen
class Loss:
    key: str
    name: str
    term: Term
    span: Span


Computed = Union[Loss, Excite]  # what a stage computes from tensors: a term tree under a key


@attrs.frozen
class Stage:
    name: str
    data: Data
    evaluation_only: bool  # evaluates, trains nothing: no optimizer, losses or epochs
    epochs: Value | None
    batch: int  # the stage's `batch=`, else its data's
    optimizer: Call | None
    lr: Call | None  # None: a constant learning rate
    grad_clip: float | None
    written: dict[str, Value] = attrs.field(eq=False)  # its own keywords as written (`data=` as the data's name)
    trains: tuple[str, ...]  # component names, sorted
    evaluates: tuple[str, ...]  # as written, each once (may include trained ones)
    evaluate_spans: tuple[tuple[str, Span], ...]  # every `evaluate` mention, for diagnostics
    losses: tuple[Loss, ...]  # its own `loss` items, then those `losses` names
    excites: tuple[Excite, ...]  # its own and those its losses read, in data-flow order
    span: Span

    @property
    def epoch_count(self) -> int:
        return int(self.epochs.value) if self.epochs is not None else 0


@attrs.frozen
class Report:
    """`report top1 on test, select best on val[, noise [...]]`; the defaults without one."""

    metrics: tuple[str, ...] = ("top1",)
    split: str = "test"
    select: str = "last"
    select_split: str = "test"
    noise: tuple[float, ...] = ()


@attrs.define(eq=False)
class Program:
    """One recipe, resolved. Components are in declaration order (checkpoints load in it), `flow`
    lists them in data-flow order (stages build and run them in it), stages are in run order."""

    title: str
    path: str  # the root recipe file
    meaning: str  # the statements without spans or comments: equal meaning, equal text
    sources: SourceMap  # the root and every file it `use`s, as read, root first
    data: dict[str, Data]
    components: dict[str, Component]  # in declaration order
    flow: tuple[str, ...]  # the components in data-flow order
    taps: dict[str, Tap]
    excites: dict[str, Excite]  # every one declared, in declaration order
    losses: dict[str, Loss]  # likewise
    stages: tuple[Stage, ...]
    report: Report
    runtime: dict[str, Value]  # `runtime(...)` as written (later statements win)
    seed: int
    dot: str  # the recipe's diagram (DOT text), drawn by the front end from the checked graph; "" if not asked for
    meta: dict[str, Any] = attrs.field(factory=dict)  # facts passes add (see kdlang.ir.shapes)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}")

    def kind(self, name: str) -> str:
        return self.components[name].kind

    def of_kind(self, kind: str) -> list:
        return [c for c in self.components.values() if c.kind == kind]

    def upstream(self, name: str) -> set[str]:
        """The component and every component it reads from."""
        component = self.components[name]
        return {name} if isinstance(component, Model) else {name, component.tap.model.name}

    def order(self, names: Iterable[str]) -> list[str]:
        """`names` in data-flow order."""
        wanted = set(names)
        return [n for n in self.flow if n in wanted]

    def checkpoints(self) -> list[tuple[Component, Checkpoint]]:
        return [(c, c.checkpoint) for c in self.components.values() if c.checkpoint is not None]
