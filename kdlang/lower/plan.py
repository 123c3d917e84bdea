"""The lowering plan: models built, taps resolved, every tensor's shape inferred, terms expanded.

Built once from a checked graph, without data and without a GPU (models are built on the CPU and
traced on the `meta` device). `kdlang check` runs it as the shape pass; `compile` builds on it.
"""

from __future__ import annotations

import attrs

from kdlang.diagnostics import Note, error
from kdlang.graph import evaluate
from kdlang.graph.evaluate import NotStatic
from kdlang.graph.graph import RecipeGraph
from kdlang.library import branches as branch_lib
from kdlang.lower import terms as T
from kdlang.syntax import ast

CHECK_NUM_DATA = 4096  # a memory-bank size for sizing CRD at check time, when the data is not loaded


@attrs.define
class ModelSpec:
    name: str
    source: str  # `cnn_wide` or `tv.resnet18`
    kwargs: dict
    input_shape: tuple
    classes: int
    module: object = None


@attrs.define
class Plan:
    graph: RecipeGraph
    data: dict = attrs.field(factory=dict)  # data key -> (dataset name, DatasetInfo, static kwargs)
    models: dict = attrs.field(factory=dict)  # model name -> ModelSpec
    taps: dict = attrs.field(factory=dict)  # tap key -> (model, layer path)
    shapes: dict = attrs.field(factory=dict)  # tensor key -> shape without batch dim
    terms: dict = attrs.field(factory=dict)  # loss/excite key -> Term
    loss_shapes: dict = attrs.field(factory=dict)  # loss instance -> (student shape, teacher shape)
    granularity_widths: dict = attrs.field(factory=dict)  # granularity -> input feature width
    decoders: set = attrs.field(factory=set)  # granularities whose logits something reads
    classes: int = 0
    model_stage_data: dict | None = None  # model -> the data key of the first stage using it

    @property
    def symbols(self):
        return self.graph.symbols


def static_kwargs(call: ast.Call, symbols=None) -> dict:
    out = {}
    for kwarg in call.kwargs:
        try:
            out[kwarg.name.text] = evaluate.value(kwarg.value, symbols)
        except NotStatic:
            pass
    return out


def make_plan(graph: RecipeGraph, build_losses: bool = True) -> tuple[Plan, list]:
    plan, problems = Plan(graph), []
    _plan_data(plan, problems)
    _plan_models(plan, problems)
    _plan_taps(plan, problems)
    _plan_modules(plan, problems)
    _plan_evaluated(plan, problems)
    _plan_terms(plan, problems)
    if build_losses:
        _plan_losses(plan, problems)
    return plan, problems


def _plan_data(plan: Plan, problems) -> None:
    from kdlang.library import datasets

    for decl in plan.symbols.of_kind("data"):
        call = decl.node.source
        kwargs = static_kwargs(call)
        specific = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()
                    if k not in datasets.COMMON_KWARGS and k not in ("batch", "workers")}
        try:
            info = datasets.info(call.name, **specific)
        except (TypeError, ValueError) as exc:
            problems.append(error(f"data set `{call.name}`: {exc}", call.span))
            continue
        _plan_augment(call, info.input_shape, problems)
        plan.data[decl.key] = (call.name, info, kwargs)
    default = plan.data.get("data") or next(iter(plan.data.values()), None)
    plan.classes = default[1].num_classes if default else 10


AUGMENT_KEYS = ("augment", "test_augment")  # a data declaration's lists of calls, not values


def augment_spec(call: ast.Call) -> tuple:
    """One augmentation as `datasets.build` takes it: (name, args, kwargs), every value static."""
    return (call.name, tuple(evaluate.value(a) for a in call.args),
            {k.name.text: evaluate.value(k.value) for k in call.kwargs})


def _plan_augment(call: ast.Call, input_shape, problems) -> None:
    """The augmentations fit the images (no crop larger than the image, valid arguments): what
    `datasets.build` checks before reading any file, so a run does not stop there."""
    from kdlang.library import datasets

    for key in AUGMENT_KEYS:
        specs = []
        for item in call.list_items(key):
            try:
                specs.append(augment_spec(item))
                datasets.check_augment(specs, input_shape)
            except (NotStatic, TypeError, ValueError, ArithmeticError) as exc:
                reason = "its arguments are plain numbers" if isinstance(exc, NotStatic) else _message(exc)
                problems.append(error(f"augmentation `{item.name}` cannot apply to images of shape "
                                      f"{list(input_shape)}: {reason}", item.span))
                break


def _plan_models(plan: Plan, problems) -> None:
    from kdlang.library import models

    for decl in plan.symbols.of_kind("model"):
        call = decl.node.source
        kwargs = static_kwargs(call)
        default = _model_data(plan, decl.name)
        classes = int(kwargs.pop("classes", None) or (default[1].num_classes if default else plan.classes))
        prefix, _, name = call.name.partition(".")
        source = name if prefix == "zoo" else call.name
        in_channels = kwargs.pop("in_channels", None)
        if default is not None:
            input_shape = tuple(default[1].input_shape)
            in_channels = in_channels or input_shape[0]
            input_shape = (int(in_channels), *input_shape[1:])
        else:
            try:
                input_shape = tuple(models.info(source).input_size)
            except Exception:
                input_shape = (3, 32, 32)
            in_channels = in_channels or input_shape[0]
        spec = ModelSpec(decl.name, source, kwargs, input_shape, classes)
        try:
            spec.module = models.build(source, num_classes=classes, in_channels=int(in_channels), **kwargs)
        except Exception as exc:  # the library refuses these values (torch raises several kinds)
            problems.append(error(f"cannot build model `{call.name}`: {_message(exc)}", call.span))
            continue
        plan.models[decl.name] = spec


def _model_data(plan: Plan, model: str):
    """The data a model sees: that of the first stage that trains it or reads it, else the default."""
    if plan.model_stage_data is None:  # one pass over the stages for every model
        plan.model_stage_data = {}
        graph = plan.graph
        for stage in graph.stages:
            readers = graph.stage_losses(stage) + graph.stage_excites(stage) + graph.evaluated_in(stage)
            used = set(graph.trained_in(stage)).union(*(graph.components(k) for k in readers))
            for name in used:
                plan.model_stage_data.setdefault(name, graph.stage_data(stage))
    found = plan.data.get(plan.model_stage_data.get(model, ""))
    return found or plan.data.get("data") or next(iter(plan.data.values()), None)


def _plan_taps(plan: Plan, problems) -> None:
    from kdlang.library.models import TapError, list_taps, resolve

    listed = {}
    for decl in plan.symbols.of_kind("tap"):
        node: ast.Tap = decl.node
        spec = plan.models.get(node.model.text)
        if spec is None:
            continue
        if spec.name not in listed:
            try:
                listed[spec.name] = list_taps(spec.module, spec.input_shape)
            except Exception as exc:  # a model that cannot run on this input
                problems.append(error(f"model `{spec.name}` cannot run on inputs of shape {list(spec.input_shape)}: "
                                      f"{_message(exc)}", plan.symbols.lookup(spec.name).node.source.span))
                listed[spec.name] = None
        taps = listed[spec.name]
        if taps is None:
            continue
        try:
            info = resolve(spec.module, node.layer.text, spec.input_shape, taps=taps)
        except TapError as exc:
            hint = ("did you mean " + ", ".join(f"`{s}`" for s in exc.suggestions[:3]) + "?") if exc.suggestions \
                else f"list the layers with `kdlang taps {_cli_name(spec)}`"
            problems.append(error(f"tap `{node.name.text}`: {exc.message}", node.layer.span, hint=hint))
            continue
        plan.taps[decl.key] = (spec.name, node.layer.text)
        plan.shapes[decl.key] = tuple(info.shape)


def _cli_name(spec: ModelSpec) -> str:
    return spec.source if spec.source.startswith("tv.") else f"zoo.{spec.source}"


def _plan_modules(plan: Plan, problems) -> None:
    used = plan.graph.resolution.outputs_used
    evaluated = {c for stage in plan.graph.stages for c in plan.graph.evaluated_in(stage)}
    for decl in plan.symbols.of_kind("granularity"):
        node: ast.Granularity = decl.node
        shape = plan.shapes.get(node.tap.text)
        if shape is None:
            continue
        levels = evaluate.level_args(plan.symbols, decl.name)
        if len(shape) not in (1, 3):
            problems.append(error(f"granularity `{decl.name}` needs a feature vector or map, but tap "
                                  f"`{node.tap.text}` is {_fmt(shape)}", node.tap.span))
            continue
        plan.granularity_widths[decl.name] = branch_lib.flat_width(shape)
        if "logits" in used.get(decl.name, set()) or decl.name in evaluated:  # evaluating reads the logits
            plan.decoders.add(decl.name)
        for key, out_shape in branch_lib.granularity_shapes(levels, plan.classes).items():
            if key.endswith(".logits") and decl.name not in plan.decoders:
                continue  # decoders exist only when something reads the logits
            plan.shapes[f"{decl.name}.{key}"] = out_shape
    for decl in plan.symbols.of_kind("branch"):
        node: ast.Branch = decl.node
        shape = plan.shapes.get(node.tap.text)
        if shape is None:
            continue
        try:
            outputs = branch_lib.output_shapes(node.source.name, static_kwargs(node.source), shape, plan.classes)
        except (KeyError, ValueError) as exc:
            problems.append(error(f"branch `{decl.name}`: {_message(exc)}", node.source.span))
            continue
        for key, out_shape in outputs.items():
            plan.shapes[f"{decl.name}.{key}"] = out_shape


def stage_classes(plan: Plan, stage: str) -> int:
    """The class count of the data a stage runs on."""
    data = plan.data.get(plan.graph.stage_data(stage))
    return data[1].num_classes if data else plan.classes


def _plan_evaluated(plan: Plan, problems) -> None:
    """What a stage evaluates must output class logits for the stage's data, like a trained head."""
    graph, reported = plan.graph, set()
    for stage in graph.stages:
        classes = stage_classes(plan, stage)
        names = [n for item in graph.decl(stage).node.of(ast.Evaluate) for n in item.names]
        for name in names:
            decl = plan.symbols.lookup(name.text)
            if decl is None or decl.key not in graph.evaluated_in(stage) or (decl.key, classes) in reported:
                continue
            reported.add((decl.key, classes))
            problem = _no_logits(plan, decl, classes)
            if problem is not None:
                message, hint = problem
                problems.append(error(f"stage `{stage}` evaluates {decl.kind} `{decl.name}`, which {message}",
                                      name.span, notes=[Note(f"`{decl.name}` is declared here", decl.span)],
                                      hint=hint))


def _no_logits(plan: Plan, decl, classes: int):
    """(what it outputs instead, hint) when an evaluated component has no class logits [classes]."""
    logits = _fmt((classes,))
    if decl.kind == "model":
        spec = plan.models.get(decl.name)
        if spec is None or spec.classes == classes:
            return None
        return (f"outputs {_fmt((spec.classes,))}, not class logits {logits}",
                f"build it with `classes={classes}`, or evaluate it on data with {spec.classes} classes")
    if decl.kind == "branch":
        outputs = {k.split(".", 1)[1]: v for k, v in plan.shapes.items() if k.startswith(decl.name + ".")}
        if not outputs or outputs.get("out") == (classes,):
            return None
        shown = _fmt(outputs["out"]) if list(outputs) == ["out"] else \
            " and ".join(f"{k} {_fmt(v)}" for k, v in outputs.items())
        return (f"outputs {shown}, not class logits {logits}",
                "evaluate branches whose output has the class count, e.g. `linear()` (`out=` defaults to it)")
    if decl.kind == "granularity":
        node = decl.node
        if decl.name not in plan.granularity_widths:
            return None  # its tap has no usable shape: already reported
        if "logits" in plan.graph.resolution.outputs_used.get(decl.name, set()) or \
                (node.checkpoint is not None and node.checkpoint.path is not None):
            if (classes,) == (plan.classes,):
                return None
            return (f"outputs {_fmt((plan.classes,))}, not class logits {logits}",
                    "a granularity's decoders have the class count of the recipe's default data")
        codes = ", ".join(f"{level} {_fmt(plan.shapes[f'{decl.name}.{level}.code'])}"
                          for level in evaluate.level_args(plan.symbols, decl.name))
        return (f"has no trained class logits: its levels output codes {codes}, and no loss reads "
                f"`{decl.name}.LEVEL.logits` to train decoders",
                f"train its decoders in an earlier stage (e.g. `ce({decl.name}.LEVEL.logits, label)`), or load "
                "them `from` a file")
    return None


def _plan_terms(plan: Plan, problems) -> None:
    graph = plan.graph
    keys = [d.key for d in plan.symbols.decls.values() if d.kind in ("loss", "excite")]
    excites = [k for k in keys if graph.kind(k) == "excite"]
    for key in excites + [k for k in keys if k not in excites]:
        decl = graph.decl(key)
        try:
            term = T.Expander(plan.symbols, key).expand(decl.node.value)
        except (ValueError, KeyError, AttributeError, IndexError, TypeError):
            continue  # resolution reported the problem
        plan.terms[key] = term
        if decl.kind == "excite":
            shape = _excite_shape(plan, decl, term, problems)
            if shape is not None:
                plan.shapes[key] = shape


def _excite_shape(plan: Plan, decl, term, problems):
    heads = [t for t in T.walk(term) if isinstance(t, T.TTensor)]
    shapes = [(h, plan.shapes.get(h.key)) for h in heads]
    if any(s is None for _, s in shapes) or not shapes:
        return None
    first, first_shape = shapes[0]
    for head, shape in shapes[1:]:
        if shape != first_shape:
            problems.append(error(f"excitation `{decl.name}` mixes `{head.key}` {_fmt(shape)} with "
                                  f"`{first.key}` {_fmt(first_shape)}", head.span,
                                  notes=[Note(f"`{first.key}` is used here", first.span)],
                                  hint="heads of an excitation must have the same shape (e.g. all class logits)"))
            return None
    return first_shape


def _plan_losses(plan: Plan, problems) -> None:
    """Build each loss instance with its input shapes: sizes adapters and catches mismatches."""
    from kdlang.library import losses

    for key, term in plan.terms.items():
        for call in T.loss_calls(term):
            shapes = [_term_shape(plan, t) for t in call.inputs]
            if any(s is None for s in shapes):
                continue
            s_shape = shapes[0]
            t_shape = shapes[1] if len(shapes) > 1 else None
            plan.loss_shapes[call.instance] = (s_shape, t_shape)
            hyper = {k: (v.at(0.0) if isinstance(v, T.TScalar) else v) for k, v in call.hyper.items()}
            try:
                losses.build(call.fn, s_shape=s_shape, t_shape=t_shape, num_data=CHECK_NUM_DATA, **hyper)
            except losses.ShapeError as exc:
                problems.append(_shape_problem(call, shapes, exc))
            except Exception as exc:  # the library refuses these values (torch raises several kinds)
                problems.append(error(f"`{call.fn}`: {_message(exc)}", call.span))


def _term_shape(plan: Plan, term):
    if isinstance(term, T.TList):
        shapes = [_term_shape(plan, t) for t in term.items]
        return None if any(s is None for s in shapes) else shapes
    return plan.shapes.get(term.key)


def _shape_problem(call: T.TLoss, shapes, exc):
    student, teacher = call.inputs[0], call.inputs[1] if len(call.inputs) > 1 else None
    ends = f"student `{_label(student)}` {_fmt(shapes[0])}"
    if teacher is not None:
        ends += f" and teacher `{_label(teacher)}` {_fmt(shapes[1])}"
    return error(f"`{call.fn}` cannot compare {ends}: {_message(exc)}", call.span,
                 hint=_adapter_hint(call.fn))


def _adapter_hint(fn: str) -> str:
    if fn in ("kd", "kl", "dkd"):
        return "these compare class logits or codes of equal width: tap `.output` on both sides"
    if fn in ("at", "fsp", "nst", "sp"):
        return "tap layers with the same spatial size on both sides (e.g. the same stage index)"
    return "tap tensors whose shapes the method can align, or add a branch (e.g. `linear(out=N)`) as an adapter"


def _label(term) -> str:
    if isinstance(term, T.TList):
        return ", ".join(_label(t) for t in term.items)
    return term.key


def _fmt(shape) -> str:
    if isinstance(shape, list):
        return ", ".join(_fmt(s) for s in shape)
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _message(exc) -> str:
    text = str(exc)
    return text[1:-1] if text.startswith(("'", '"')) and text.endswith(("'", '"')) else text
