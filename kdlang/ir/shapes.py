"""The shape pass: build each model once, trace its taps, and annotate every tensor with its shape.

Requires: a verified `Program` (kdlang.ir.build). Ensures: `program.meta["shapes"]` is a `Shapes`
whose `shapes` holds every tap, level code/logits, branch output and excitation the program reads;
`models` holds each model built (its weights initialised from `program.seed`, as a run needs them);
loss modules were built once with their input shapes (adapters sized, mismatches reported).
Problems are positioned diagnostics; the pass never raises on a recipe's values.

No data and no GPU: models are built on the CPU and traced on the `meta` device. Lowering reuses
the models built here, so a check followed by a run builds each model once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeGuard, Union

import attrs
import torch

from kdlang.diagnostics import Diagnostic, Note, error
from kdlang.ir import nodes as N
from kdlang.ir import terms as T
from kdlang.library import branches as branch_lib

if TYPE_CHECKING:  # for annotations only: the pass imports these libraries inside the functions that use them
    from kdlang.library.datasets.base import DatasetInfo
    from kdlang.library.models.taps import TapInfo

CHECK_NUM_DATA = 4096  # a memory-bank size for sizing CRD at check time, when the data is not loaded
KEY = "shapes"

Shape = tuple[int, ...]  # one sample's, without the batch dimension
TermShape = Union[Shape, list["TermShape"]]  # a loss input's: a tensor's, or a list's (one per item)


@attrs.define
class BuiltModel:
    module: torch.nn.Module
    input_shape: Shape  # one sample's, without the batch dimension
    classes: int
    architecture: tuple | None = None  # `models.architecture`: what its taps depend on (None: traced every time)


@attrs.define
class Shapes:
    data: dict[str, DatasetInfo] = attrs.field(factory=dict)  # data name -> DatasetInfo
    classes: int = 10  # the default data's class count
    models: dict[str, BuiltModel] = attrs.field(factory=dict)  # model name -> BuiltModel
    tensors: dict[str, Shape] = attrs.field(factory=dict)  # tensor key -> shape without the batch dimension
    granularity_widths: dict[str, int] = attrs.field(factory=dict)  # granularity -> its input's flat width
    # loss instance -> (student shape, teacher shape)
    loss_shapes: dict[str, tuple[TermShape, TermShape | None]] = attrs.field(factory=dict)
    init_rng: torch.Tensor | None = None  # the CPU generator right after model initialisation

    def stage_classes(self, stage: N.Stage) -> int:
        """The class count of the data a stage runs on."""
        info = self.data.get(stage.data.name)
        return info.num_classes if info is not None else self.classes


def of(program: N.Program) -> Shapes:
    """The shape pass's annotations (it must have run)."""
    return program.meta[KEY]


def infer(program: N.Program, *, build_losses: bool = True) -> list[Diagnostic]:
    """Run the pass; returns its problems. The global RNG is left untouched."""
    shapes = Shapes()
    problems: list[Diagnostic] = []
    program.meta[KEY] = shapes
    _data(program, shapes, problems)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(program.seed)  # weights are initialised here: the seed decides them
        _models(program, shapes, problems)
        shapes.init_rng = torch.get_rng_state()
        _taps(program, shapes, problems)
        _modules(program, shapes, problems)
        _evaluated(program, shapes, problems)
        _excites(program, shapes, problems)
        if build_losses:
            _losses(program, shapes, problems)
    return problems


def _data(program: N.Program, shapes: Shapes, problems: list[Diagnostic]) -> None:
    from kdlang.library import datasets

    for data in program.data.values():
        keywords = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.call.values().items()
                    if k not in ("batch", "workers")}  # the loaders' own; `info` takes the rest
        try:
            info = datasets.info(data.call.name, **keywords)
        except (TypeError, ValueError) as exc:
            problems.append(error(f"data set `{data.call.name}`: {exc}", data.call.span))
            continue
        _augment(data, info.input_shape, problems)
        shapes.data[data.name] = info
    default = shapes.data.get("data") or next(iter(shapes.data.values()), None)
    shapes.classes = default.num_classes if default is not None else 10


def augment_spec(call: N.Call) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """One augmentation as `datasets.build` takes it: (name, args, kwargs)."""
    return (call.name, tuple(call.arg_values()), call.values())


def _augment(data: N.Data, input_shape: Shape, problems: list[Diagnostic]) -> None:
    """The augmentations fit the images (no crop larger than the image, valid arguments): what
    `datasets.build` checks before reading any file, so a run does not stop there."""
    from kdlang.library import datasets

    for calls in (data.augment, data.test_augment):
        specs = []
        for call in calls:
            try:
                specs.append(augment_spec(call))
                datasets.check_augment(specs, input_shape)
            except (TypeError, ValueError, ArithmeticError) as exc:
                problems.append(error(f"augmentation `{call.name}` cannot apply to images of shape "
                                      f"{list(input_shape)}: {_message(exc)}", call.span))
                break


def _models(program: N.Program, shapes: Shapes, problems: list[Diagnostic]) -> None:
    from kdlang.library import models

    fallback = shapes.data.get("data") or next(iter(shapes.data.values()), None)
    for model in program.of_kind("model"):
        kwargs = model.call.values()
        info = (shapes.data.get(model.data.name) if model.data is not None else None) or fallback
        classes = int(kwargs.pop("classes", None) or (info.num_classes if info else shapes.classes))
        in_channels = kwargs.pop("in_channels", None)
        if info is not None:
            input_shape = tuple(info.input_shape)
        else:
            try:
                input_shape = tuple(models.info(model.source).input_size)
            except Exception:  # an unknown model: the checker reported it
                input_shape = (3, 32, 32)
        in_channels = int(in_channels or input_shape[0])
        input_shape = (in_channels, *input_shape[1:])
        try:
            module = models.build(model.source, num_classes=classes, in_channels=in_channels, **kwargs)
        except Exception as exc:  # the library refuses these values (torch raises several kinds)
            problems.append(error(f"cannot build model `{model.call.name}`: {_message(exc)}", model.call.span))
            continue
        architecture = models.architecture(model.source, classes, in_channels, kwargs)
        shapes.models[model.name] = BuiltModel(module, input_shape, classes, architecture)


def _taps(program: N.Program, shapes: Shapes, problems: list[Diagnostic]) -> None:
    from kdlang.library.models import TapError, resolve, tap_cache

    listed: dict[str, list[TapInfo] | None] = {}
    for tap in program.taps.values():
        built = shapes.models.get(tap.model.name)
        if built is None:
            continue
        if tap.model.name not in listed:
            try:
                # one trace per architecture, kept across checks and processes (kdlang.library.models.tap_cache)
                listed[tap.model.name] = tap_cache.listing(built.module, built.input_shape, built.architecture)
            except Exception as exc:  # a model that cannot run on this input
                problems.append(error(f"model `{tap.model.name}` cannot run on inputs of shape "
                                      f"{list(built.input_shape)}: {_message(exc)}", tap.model.call.span))
                listed[tap.model.name] = None
        if listed[tap.model.name] is None:
            continue
        try:
            info = resolve(built.module, tap.layer, built.input_shape, taps=listed[tap.model.name])
        except TapError as exc:
            hint = ("did you mean " + ", ".join(f"`{s}`" for s in exc.suggestions[:3]) + "?") if exc.suggestions \
                else f"list the layers with `kdlang taps {_cli_name(tap.model)}`"
            problems.append(error(f"tap `{tap.name}`: {exc.message}", tap.layer_span, hint=hint))
            continue
        shapes.tensors[tap.name] = tuple(info.shape)


def _cli_name(model: N.Model) -> str:
    return model.source if model.source.startswith("tv.") else f"zoo.{model.source}"


def _modules(program: N.Program, shapes: Shapes, problems: list[Diagnostic]) -> None:
    for granularity in program.of_kind("granularity"):
        shape = shapes.tensors.get(granularity.tap.name)
        if shape is None:
            continue
        if len(shape) not in (1, 3):
            problems.append(error(f"granularity `{granularity.name}` needs a feature vector or map, but tap "
                                  f"`{granularity.tap.name}` is {_fmt(shape)}", granularity.tap_span))
            continue
        shapes.granularity_widths[granularity.name] = branch_lib.flat_width(shape)
        for key, out_shape in branch_lib.granularity_shapes(level_args(granularity), shapes.classes).items():
            if key.endswith(".logits") and not granularity.decoders:
                continue  # decoders exist only when something reads the logits
            shapes.tensors[f"{granularity.name}.{key}"] = out_shape
    for branch in program.of_kind("branch"):
        shape = shapes.tensors.get(branch.tap.name)
        if shape is None:
            continue
        try:
            outputs = branch_lib.output_shapes(branch.call.name, branch.call.values(), shape, shapes.classes)
        except (KeyError, ValueError) as exc:
            problems.append(error(f"branch `{branch.name}`: {_message(exc)}", branch.call.span))
            continue
        for key, out_shape in outputs.items():
            shapes.tensors[f"{branch.name}.{key}"] = out_shape


def level_args(granularity: N.Granularity) -> dict[str, dict[str, float | None]]:
    """Levels as the branch library takes them."""
    return {level.name: {"code": level.code, "T": level.T, "hidden": level.hidden} for level in granularity.levels}


def _evaluated(program: N.Program, shapes: Shapes, problems: list[Diagnostic]) -> None:
    """What a stage evaluates must output class logits for the stage's data, like a trained head."""
    reported: set[tuple[str, int]] = set()
    for stage in program.stages:
        classes = shapes.stage_classes(stage)
        for name, span in stage.evaluate_spans:
            if (name, classes) in reported:
                continue
            reported.add((name, classes))
            component = program.components[name]
            problem = _no_logits(shapes, component, classes)
            if problem is not None:
                message, hint = problem
                problems.append(error(f"stage `{stage.name}` evaluates {component.kind} `{name}`, which {message}",
                                      span, notes=[Note(f"`{name}` is declared here", component.span)], hint=hint))


def _no_logits(shapes: Shapes, component: N.Component, classes: int) -> tuple[str, str] | None:
    """(what it outputs instead, hint) when an evaluated component has no class logits [classes]."""
    logits = _fmt((classes,))
    if isinstance(component, N.Model):
        built = shapes.models.get(component.name)
        if built is None or built.classes == classes:
            return None
        return (f"outputs {_fmt((built.classes,))}, not class logits {logits}",
                f"build it with `classes={classes}`, or evaluate it on data with {built.classes} classes")
    if isinstance(component, N.Branch):
        outputs = {k.split(".", 1)[1]: v for k, v in shapes.tensors.items() if k.startswith(component.name + ".")}
        if not outputs or outputs.get("out") == (classes,):
            return None
        shown = _fmt(outputs["out"]) if list(outputs) == ["out"] else \
            " and ".join(f"{k} {_fmt(v)}" for k, v in outputs.items())
        return (f"outputs {shown}, not class logits {logits}",
                "evaluate branches whose output has the class count, e.g. `linear()` (`out=` defaults to it)")
    if component.name not in shapes.granularity_widths:
        return None  # its tap has no usable shape: already reported
    if component.logits_read or (component.checkpoint is not None and component.checkpoint.path is not None):
        if classes == shapes.classes:
            return None
        return (f"outputs {_fmt((shapes.classes,))}, not class logits {logits}",
                "a granularity's decoders have the class count of the recipe's default data")
    codes = ", ".join(f"{level.name} {_fmt(shapes.tensors[f'{component.name}.{level.name}.code'])}"
                      for level in component.levels)
    return (f"has no trained class logits: its levels output codes {codes}, and no loss reads "
            f"`{component.name}.LEVEL.logits` to train decoders",
            f"train its decoders in an earlier stage (e.g. `ce({component.name}.LEVEL.logits, label)`), or load "
            "them `from` a file")


def _excites(program: N.Program, shapes: Shapes, problems: list[Diagnostic]) -> None:
    for excite in program.excites.values():  # declaration order: one may read an earlier one
        shape = _excite_shape(shapes, excite, problems)
        if shape is not None:
            shapes.tensors[excite.key] = shape


def _excite_shape(shapes: Shapes, excite: N.Excite, problems: list[Diagnostic]) -> Shape | None:
    heads = [t for t in T.walk(excite.term) if isinstance(t, T.TTensor)]
    found = [(h, shapes.tensors.get(h.key)) for h in heads]
    if not found or any(s is None for _, s in found):
        return None
    first, first_shape = found[0]
    for head, shape in found[1:]:
        if shape != first_shape:
            assert shape is not None and first_shape is not None  # every head has a shape (checked above)
            problems.append(error(f"excitation `{excite.name}` mixes `{head.key}` {_fmt(shape)} with "
                                  f"`{first.key}` {_fmt(first_shape)}", head.span,
                                  notes=[Note(f"`{first.key}` is used here", first.span)],
                                  hint="heads of an excitation must have the same shape (e.g. all class logits)"))
            return None
    return first_shape


def _losses(program: N.Program, shapes: Shapes, problems: list[Diagnostic]) -> None:
    """Build each loss instance with its input shapes: sizes adapters and catches mismatches."""
    from kdlang.library import losses

    for loss in program.losses.values():
        for call in T.loss_calls(loss.term):
            found = [_term_shape(shapes, t) for t in call.inputs]
            if not _known(found):
                continue
            s_shape, t_shape = found[0], (found[1] if len(found) > 1 else None)
            shapes.loss_shapes[call.instance] = (s_shape, t_shape)
            hyper = {k: (v.at(0.0) if isinstance(v, T.TScalar) else v) for k, v in call.hyper.items()}
            try:
                losses.build(call.fn, s_shape=s_shape, t_shape=t_shape, num_data=CHECK_NUM_DATA, **hyper)
            except losses.ShapeError as exc:
                problems.append(_shape_problem(call, found, exc))
            except Exception as exc:  # the library refuses these values (torch raises several kinds)
                problems.append(error(f"`{call.fn}`: {_message(exc)}", call.span))


def term_shape(shapes: Shapes, term: T.TTensor | T.TList) -> TermShape | None:
    """The shape of a loss input: a tensor's, or a list of them."""
    return _term_shape(shapes, term)


def _term_shape(shapes: Shapes, term: T.TTensor | T.TList) -> TermShape | None:
    if isinstance(term, T.TList):
        found = [_term_shape(shapes, t) for t in term.items]
        return found if _known(found) else None
    return shapes.tensors.get(term.key)


def _known(found: list[TermShape | None]) -> TypeGuard[list[TermShape]]:
    """Every shape was inferred (none is None)."""
    return not any(s is None for s in found)


def _shape_problem(call: T.TLoss, found: list[TermShape], exc: Exception) -> Diagnostic:
    student, teacher = call.inputs[0], call.inputs[1] if len(call.inputs) > 1 else None
    ends = f"student `{_label(student)}` {_fmt(found[0])}"
    if teacher is not None:
        ends += f" and teacher `{_label(teacher)}` {_fmt(found[1])}"
    return error(f"`{call.fn}` cannot compare {ends}: {_message(exc)}", call.span, hint=_adapter_hint(call.fn))


def _adapter_hint(fn: str) -> str:
    if fn in ("kd", "kl", "dkd"):
        return "these compare class logits or codes of equal width: tap `.output` on both sides"
    if fn in ("at", "fsp", "nst", "sp"):
        return "tap layers with the same spatial size on both sides (e.g. the same stage index)"
    return "tap tensors whose shapes the method can align, or add a branch (e.g. `linear(out=N)`) as an adapter"


def _label(term: T.TTensor | T.TList) -> str:
    if isinstance(term, T.TList):
        return ", ".join(_label(t) for t in term.items)
    return term.key


def _fmt(shape: TermShape) -> str:
    if isinstance(shape, list):
        return ", ".join(_fmt(s) for s in shape)
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _message(exc: BaseException) -> str:
    text = str(exc)
    return text[1:-1] if text.startswith(("'", '"')) and text.endswith(("'", '"')) else text
