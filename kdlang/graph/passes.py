"""Validation passes over the RecipeGraph, cheapest first. Each is one small function that returns
diagnostics; `PASSES` is the order `check` runs them in.
"""

from __future__ import annotations

import math

import networkx as nx

from kdlang.diagnostics import Note, error, warning
from kdlang.graph import calls, evaluate
from kdlang.graph import types as T
from kdlang.graph.graph import RecipeGraph
from kdlang.library.signatures import (
    AMP_MODES,
    METRICS,
    NO_DEFAULT,
    NON_NEGATIVE,
    RUNTIME_ARGS,
    SELECT_POLICIES,
    SPLITS,
    did_you_mean,
    value_rule,
)
from kdlang.library import catalog
from kdlang.syntax import ast


def cycles(graph: RecipeGraph):
    """The data flow must be acyclic; a cycle is shown whole, one note per edge."""
    flow = graph.flow()
    problems, reported = [], set()
    for component in nx.strongly_connected_components(flow):
        if len(component) < 2 and not any(flow.has_edge(n, n) for n in component):
            continue
        start = min(component, key=lambda k: (graph.g.nodes[k]["span"].line, k))
        cycle = nx.find_cycle(flow.subgraph(component), source=start)
        names = [u for u, _ in cycle] + [cycle[0][0]]
        if frozenset(names) in reported:
            continue
        reported.add(frozenset(names))
        notes = [Note(f"`{v}` reads `{u}`", graph.g.nodes[v]["span"]) for u, v in reversed(cycle) if v != start]
        problems.append(error("cycle: " + " -> ".join(f"`{n}`" for n in reversed(names)),
                              graph.g.nodes[start]["span"], notes=notes,
                              hint="a declaration cannot depend on itself, directly or through others"))
    return problems


def unused(graph: RecipeGraph):
    """Declarations of the checked file that no stage reaches are dead weight (warnings).
    Fragments brought in by `use` are libraries: their unused declarations are not reported."""
    roots = set(graph.stages)
    for stage in graph.stages:
        roots.update(graph.trained_in(stage))
        roots.update(graph.evaluated_in(stage))
        if graph.stage_data(stage) in graph.g:  # an undeclared data set is resolve's to report
            roots.add(graph.stage_data(stage))
    reached = roots | graph.upstream(roots)
    tapped_models = {graph.decl(k).node.model.text for k in reached if graph.kind(k) == "tap"}
    problems = []
    root = graph.program.root.file
    for key, data in graph.g.nodes(data=True):
        if key in reached or data["kind"] == "stage":
            continue
        decl = data["decl"]
        if decl.span.file != root:  # a fragment is a library: what a recipe does not use is fine
            continue
        if data["kind"] == "model" and key in tapped_models:
            continue
        hint = {"loss": "list it in a stage: `losses " + decl.name + "`"}.get(data["kind"], "remove it, or use it")
        problems.append(warning(f"{data['kind']} `{decl.name}` is never used", decl.span, hint=hint))
    return problems


def schedules(graph: RecipeGraph):
    """Schedules used by a stage stay inside its epochs; weights are finite and non-negative."""
    problems = []
    for stage in graph.stages:
        epochs = graph.stage_epochs(stage)
        if not value_rule("stage", "stage", "epochs").accepts(epochs):
            continue  # resolve reports bad epochs
        for key in graph.stage_losses(stage) + graph.stage_excites(stage):
            if _already_diagnosed(graph, key):
                continue
            node = graph.decl(key).node
            _check_expr(node.value, graph, stage, epochs, problems, weight=False)
        problems += _lr_milestones(graph.decl(stage).node, epochs)
    return problems


def _lr_milestones(stage: ast.Stage, epochs: int) -> list:
    """`lr multistep([...])` milestones after the stage's last epoch never take effect."""
    calls = [item.call for item in stage.of(ast.Lr)[:1] if item.call.name == "multistep" and item.call.args]
    items = [m for call in calls if isinstance(call.args[0], ast.ListExpr) for m in call.args[0].items]
    problems = []
    for item in items:
        epoch = _constant(item)
        if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) and not 0 <= epoch <= epochs:
            problems.append(warning(f"the lr milestone {_num(epoch)} is outside the epochs 0..{epochs} of stage "
                                    f"`{stage.name.text}`: it never takes effect", item.span,
                                    hint=f"use milestones inside 0..{epochs}"))
    return problems


def _check_expr(node, graph, stage, epochs, problems, weight):
    if isinstance(node, ast.BinOp) and node.op in "*/":
        for side, other in ((node.left, node.right), (node.right, node.left)):
            if _is_scalar(side, graph) and not _is_scalar(other, graph):
                if node.op == "/" and side is node.right:  # `loss / d` weighs the loss by 1/d
                    _check_scalar_range(side, graph, stage, epochs, problems, positive=True, what="divisor")
                else:
                    _check_weight(side, graph, stage, epochs, problems)
    if isinstance(node, ast.Call) and node.name in catalog.loss_names():
        hyper = catalog.loss_info(node.name).hyper
        for kwarg in node.kwargs:
            key = kwarg.name.text
            rule = value_rule("loss", node.name, key, hyper.get(key, NO_DEFAULT))
            if rule is not None and rule.schedule:  # resolve checks the values that cannot vary
                what = "temperature" if key == "T" else f"`{key}=` of `{node.name}`"
                _check_scalar_range(kwarg.value, graph, stage, epochs, problems, positive=rule.low == 0 and rule.open_low,
                                    what=what, rule=rule)
    if isinstance(node, ast.Call) and node.name == "mix":
        weights = node.kwarg("weights")
        if weights is not None and isinstance(weights.value, ast.ListExpr):
            for item in weights.value.items:
                _check_weight(item, graph, stage, epochs, problems)
    for child in _children(node):
        _check_expr(child, graph, stage, epochs, problems, weight)


def _already_diagnosed(graph, key) -> bool:
    """True when resolution found an error in the declaration: its values are not worth checking."""
    ty = graph.resolution.types.get(key)
    return ty is not None and ty.kind == T.ERROR


def _children(node):
    """Where a weight can sit below `node`: operands, list items, positional arguments and a
    comprehension's body. Keyword values are checked by their own rule above; `->`, `..` and
    indexes hold no weights."""
    if isinstance(node, (ast.BinOp, ast.Neg, ast.ListExpr)):
        return ast.children(node)
    if isinstance(node, ast.Call):
        return [a.body if isinstance(a, ast.Comprehension) else a for a in node.args]
    return ()


def _is_scalar(node, graph) -> bool:
    """True for a static value (a number or schedule), even one whose arguments are broken: those
    are checked, and reported, as weights."""
    try:
        evaluate.value(node, graph.symbols)
        return True
    except evaluate.NotStatic:
        return False
    except (TypeError, ValueError, ArithmeticError):
        return True


def _check_weight(node, graph, stage, epochs, problems):
    _check_scalar_range(node, graph, stage, epochs, problems, positive=False, what="weight")


def _check_scalar_range(node, graph, stage, epochs, problems, positive, what, rule=None):
    name = node.head.text if isinstance(node, ast.Ref) else None
    decl_note = [Note(f"schedule `{name}` is declared here", graph.symbols.lookup(name).span)] if name and graph.symbols.lookup(name) else []
    where = f"in stage `{stage}` ({_num(epochs)} epochs)"
    try:
        schedule = evaluate.as_schedule(evaluate.value(node, graph.symbols))
        found = _range_problems(schedule, stage, epochs, positive, what, rule)
    except evaluate.NotStatic:
        return
    except (TypeError, ValueError, ArithmeticError) as exc:  # static, but its arguments make no sense
        found = [(f"the {what} cannot be computed {where}: {_reason(exc)}", "check the arguments of its schedule")]
    for message, hint in found:
        problems.append(error(message, node.span, notes=decl_note, hint=hint))


def _range_problems(schedule, stage, epochs, positive, what, rule=None) -> list[tuple[str, str]]:
    """(message, hint) for each way a weight or temperature schedule leaves its allowed range."""
    found = []
    where = f"in stage `{stage}` ({_num(epochs)} epochs)"
    outside = f"outside the epochs 0..{_num(epochs)} of stage `{stage}`"
    window = schedule.span_epochs
    if window is not None and (window[0] < 0 or window[1] > epochs or window[0] >= window[1] and window[1] != 0):
        found.append((f"the {what} moves over epochs {_num(window[0])}..{_num(window[1])}, {outside}",
                      f"use a range inside 0..{_num(epochs)}, with start < end"))
    for milestone in schedule.milestones:
        if milestone < 0 or milestone > epochs:
            found.append((f"the {what} steps at epoch {_num(milestone)}, {outside}",
                          f"use milestones inside 0..{_num(epochs)}"))
    low, high = schedule.bounds(epochs)
    reaches = "is" if low == high else "reaches"
    if not (math.isfinite(low) and math.isfinite(high)):
        found.append((f"the {what} is not finite {where}", "look for a division by zero or a huge number"))
    elif positive and low <= 0:
        found.append((f"the {what} {reaches} {_num(low)} {where}; it must stay above 0",
                      {"temperature": "logits are divided by the temperature: use e.g. `T=4`"}.get(
                          what, "a loss divided by it would be infinite or negative")))
    elif not positive and low < 0 and rule is None:
        found.append((f"the {what} {reaches} {_num(low)} {where}; loss weights must be non-negative",
                      "a weight of 0 switches a loss off"))
    elif rule is not None and not (rule.accepts(low) and rule.accepts(high)):
        value = low if not rule.accepts(low) else high
        found.append((f"the {what} {reaches if value == low else 'reaches'} {_num(value)} {where}; "
                      f"it must be {rule.noun()}", f"it takes {rule.describe()}"))
    return found


def _reason(exc: Exception) -> str:
    if isinstance(exc, ZeroDivisionError):
        return "it divides by zero"
    if isinstance(exc, OverflowError):
        return "a number grows too large"
    return str(exc)


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def stages(graph: RecipeGraph):
    """Each stage trains or evaluates something; a training stage has an optimizer and losses, an
    evaluation stage has neither; what a stage reads or evaluates exists by then."""
    problems = []
    symbols = graph.symbols
    trained_before: set[str] = set()
    warned: set[str] = set()
    first_trained: dict[str, str] = {}
    for stage in graph.stages:
        for component in graph.trained_in(stage):
            first_trained.setdefault(component, stage)
    for stage in graph.stages:
        node = graph.decl(stage).node
        what = f"stage `{stage}`"
        epochs = graph.stage_epochs(stage)
        epochs_arg = next((k for k in node.kwargs if k.name.text == "epochs"), None)
        if node.evaluation_only:
            if epochs_arg is not None and (epochs != 0 or isinstance(epochs, bool)):
                problems.append(error(f"{what} only evaluates: it runs no epochs", epochs_arg.value.span,
                                      hint="leave `epochs=` out (or write `epochs=0`), or add `train NAME` "
                                      "to train for that many epochs"))
            problems += _evaluation_only_items(node)
        trained = set(graph.trained_in(stage))
        problems += _missing_data(graph, stage)
        if not node.of(ast.Train) and not node.of(ast.Evaluate):
            problems.append(error(f"{what} trains nothing and evaluates nothing", node.name.span,
                                  hint="add `train student` (models, granularities or branches), "
                                  "or `evaluate NAME` to only measure them"))
        if not node.of(ast.Optimizer) and not node.evaluation_only:
            problems.append(error(f"{what} has no optimizer", node.name.span,
                                  hint="add e.g. `optimizer sgd(lr=0.05, momentum=0.9, weight_decay=5e-4)`"))
        losses = graph.stage_losses(stage)
        if not (node.of(ast.Loss) or node.of(ast.Losses)) and node.of(ast.Train):
            problems.append(error(f"{what} has no loss", node.name.span,
                                  hint="add `loss ce = ce(s_logits, label)` or `losses NAME, ...`"))
        for component in sorted(trained):
            decl = symbols.lookup(component)
            if decl is not None and decl.kind == "model" and decl.node.frozen:
                train_item = next(n for item in node.of(ast.Train) for n in item.names if n.text == component)
                problems.append(error(f"model `{component}` is declared frozen but {what} trains it",
                                      train_item.span, notes=[Note("declared frozen here", decl.node.span)],
                                      hint="remove `frozen`, or remove it from `train`"))
        for key in losses:
            loss = graph.decl(key)
            reads = graph.components(key)
            if reads and trained and not (reads & trained):
                problems.append(error(f"loss `{loss.name}` in {what} reads nothing this stage trains",
                                      loss.span, hint="train what it reads, or move the loss to the stage that does: "
                                      f"it reads {', '.join(sorted(reads))}"))
            teachers = graph.resolution.teacher_inputs.get(key, set()) & trained
            for teacher in sorted(teachers):
                if graph.kind(teacher) == "model" and symbols.lookup(teacher) and teacher not in graph.components(key) - teachers:
                    problems.append(warning(f"the teacher side of loss `{loss.name}` (`{teacher}`) is trained in {what}",
                                            loss.span, hint="distil from a frozen teacher: remove it from `train`"))
        for key in losses + graph.stage_excites(stage):
            user = graph.decl(key)
            for component in sorted(graph.components(key) - trained):
                _check_ready(graph, stage, component, trained_before, first_trained, problems,
                             reader=f"`{user.name}`", span=user.span, warned=warned)
        problems += _evaluated(graph, stage, trained, trained_before, first_trained)
        trained_before |= trained
    problems += _checkpoint_stages(graph, first_trained)
    return problems


def _missing_data(graph, stage) -> list:
    """A stage without `data=` trains on the unnamed data declaration, which must exist."""
    node = graph.decl(stage).node
    if any(k.name.text == "data" for k in node.kwargs) or graph.stage_data(stage) in graph.g:
        return []
    named = [d.name for d in graph.symbols.of_kind("data")]
    if named:
        return [error(f"stage `{stage}` does not say which data it trains on", node.name.span,
                      hint=f"add `data={named[0]}` to its arguments, or declare data without a name: `data SET(...)`")]
    return [error(f"stage `{stage}` trains on the recipe's data, but no data is declared", node.name.span,
                  hint="declare it, e.g. `data fashion_mnist(batch=128)`")]


_EVALUATION_ONLY_ITEMS = (
    (ast.Optimizer, "optimizer", "optimizer"), (ast.Lr, "lr", "learning-rate schedule"),
    (ast.Loss, "loss", "losses"), (ast.Losses, "losses", "losses"), (ast.Excite, "excite", "excitations"),
)


def _evaluation_only_items(node: ast.Stage) -> list:
    """An evaluation stage (`evaluate`, no `train`) takes no optimizer, lr, losses or excitations."""
    problems = []
    for item in node.items:
        for kind, keyword, what in _EVALUATION_ONLY_ITEMS:
            if isinstance(item, kind):
                problems.append(error(f"stage `{node.name.text}` only evaluates: it takes no {what}", item.span,
                                      hint=f"remove the `{keyword}` line, or add `train NAME` to make it a "
                                      "training stage"))
    return problems


def _evaluated(graph, stage, trained, trained_before, first_trained) -> list:
    """What a stage evaluates must be ready: trained by an earlier stage, or loaded from a file."""
    problems, seen = [], set()
    node = graph.decl(stage).node
    for name in (n for item in node.of(ast.Evaluate) for n in item.names):
        decl = graph.symbols.lookup(name.text)
        if decl is None or decl.key not in graph.evaluated_in(stage):
            continue  # resolve reported it
        if decl.key in trained or decl.key in seen:
            reason = f"stage `{stage}` trains it" if decl.key in trained else "it is listed twice"
            problems.append(warning(f"`{name.text}` is evaluated already: {reason}", name.span,
                                    hint=f"remove `{name.text}` from `evaluate`"))
            continue
        seen.add(decl.key)
        upstream = sorted(graph.components(decl.key) - trained - {decl.key})
        for component in [decl.key, *upstream]:  # one error per evaluated name: itself first
            count = len(problems)
            _check_ready(graph, stage, component, trained_before, first_trained, problems,
                         reader=decl, span=name.span)
            if len(problems) > count:
                break
    return problems


def _check_ready(graph, stage, component, trained_before, first_trained, problems, *, reader, span, warned=None):
    """`component`, read in `stage` by `reader`, must be trained by an earlier stage or loaded.

    `reader` is a loss or excitation (its name, in backquotes), or the declaration a stage evaluates.
    What nothing trains or loads is a warning for a loss (one per component: `warned`), and an error
    for an evaluation, whose numbers would be those of a random initialisation.
    """
    decl = graph.symbols.lookup(component)
    if decl is None or component in trained_before:
        return
    checkpoint = getattr(decl.node, "checkpoint", None)
    if (checkpoint is not None and checkpoint.path is not None) or _pretrained(decl):
        return
    evaluating = not isinstance(reader, str)
    if evaluating:
        subject = f"stage `{stage}` evaluates {reader.kind} `{reader.name}`"
        if reader.key != component:
            subject += f", which reads {decl.kind} `{component}`"
    if component in first_trained:
        later = first_trained[component]
        if not evaluating:
            message = f"{reader} in stage `{stage}` reads `{component}`, which stage `{later}` trains only later"
        elif reader.key == component:
            message = f"{subject}, which stage `{later}` trains only later"
        else:
            message = f"{subject}; stage `{later}` trains `{component}` only later"
        problems.append(error(message, span, notes=[Note(f"`{component}` is declared here", decl.span)],
                              hint="order the stages so that it is trained first, or give it a checkpoint"))
    elif checkpoint is not None and checkpoint.stage is not None:
        return  # `_checkpoint_stages` reports a `from stage` whose stage does not train it
    elif evaluating:
        problems.append(error(f"{subject}, but `{component}` has no checkpoint and no earlier stage trains it: "
                              "it would be measured at its random initialisation", span,
                              notes=[Note(f"`{component}` is declared here", decl.span)],
                              hint='load weights with `from "path.pt"`, or train it in an earlier stage'))
    elif component not in warned:  # one warning per component, not one per reader
        warned.add(component)
        problems.append(warning(f"{decl.kind} `{component}` is read in stage `{stage}` but has no checkpoint "
                                "and no stage trains it: it keeps its random initialisation", decl.span,
                                hint='load weights with `from "path.pt"`, or train it in an earlier stage'))


def _pretrained(decl) -> bool:
    """A model built with pretrained weights (`weights=`, `pretrained=true`, `pretrained_file=`)."""
    if decl.kind != "model":
        return False
    for key in catalog.PRETRAINED_KWARGS:
        kwarg = decl.node.source.kwarg(key)
        if kwarg is not None and _constant(kwarg.value) not in (None, False, ""):
            return True
    return False


def _checkpoint_stages(graph, first_trained):
    problems = []
    order = graph.stages
    trainable = [d for kind in ("model", "granularity", "branch") for d in graph.symbols.of_kind(kind)]
    for decl in trainable:
        checkpoint = decl.node.checkpoint
        if checkpoint is None or checkpoint.stage is None:
            continue
        source = checkpoint.stage.text
        if source not in order:
            continue  # resolve already reported it
        if decl.name not in graph.trained_in(source):
            problems.append(error(f"{decl.kind} `{decl.name}` takes its weights from stage `{source}`, which does not train it",
                                  checkpoint.stage.span, hint=f"add `train {decl.name}` to stage `{source}`"))
    return problems


def report(graph: RecipeGraph):
    """The metric policy: known metrics and splits; selecting on `val` needs a validation split."""
    problems = []
    reports = graph.symbols.reports
    if not reports:
        if graph.stages:
            first = graph.program.root
            problems.append(warning("the recipe has no `report`: results default to top1 on test, last epoch",
                                    first.statements[0].span if first.statements else first.span,
                                    hint="state the policy, e.g. `report top1 on test, select best on val`"))
        return problems
    node = reports[0]
    for metric in node.metrics:
        if metric.text not in METRICS:
            problems.append(error(f"unknown metric `{metric.text}`", metric.span, hint=did_you_mean(metric.text, METRICS)))
    for split in (node.split, node.select_split):
        if split is not None and split.text not in SPLITS:
            problems.append(error(f"unknown split `{split.text}`", split.span, hint=did_you_mean(split.text, SPLITS)))
    if node.select is not None and node.select.text not in SELECT_POLICIES:
        problems.append(error(f"unknown selection policy `{node.select.text}`", node.select.span,
                              hint="`select best on val`, or `select last on test` for the last epoch"))
    if node.select is not None and node.select.text == "best" and node.select_split.text == "test":
        problems.append(warning("selecting the best epoch on `test` tunes the recipe on its test set",
                                node.select_split.span,
                                hint="carve a validation split (`val=5000` in the data) and `select best on val`"))
    if node.select_split is not None and node.select_split.text == "val":
        for decl in graph.symbols.of_kind("data"):
            if decl.key in [graph.stage_data(s) for s in graph.stages] and not _has_validation(decl.node):
                problems.append(error("the report selects on `val` but the data has no validation split",
                                      node.select_split.span, notes=[Note("data declared here", decl.node.span)],
                                      hint="add `val=5000` (images carved from the training set) to the data"))
    if node.noise is not None:
        for item in node.noise.items:
            v = _constant(item)
            if not NON_NEGATIVE.accepts(v):
                problems.append(error("noise strengths are non-negative numbers (std of Gaussian noise)", item.span,
                                      hint="e.g. `noise [0.0, 0.1, 0.2]`"))
    return problems


def _has_validation(data: ast.Data) -> bool:
    """`val=N` with N > 0 (or not a constant, which the runtime checks) carves a validation split."""
    val = data.source.kwarg("val")
    if val is None:
        return False
    n = _constant(val.value)
    return not isinstance(n, (int, float)) or isinstance(n, bool) or n > 0


def _constant(node):
    """The value of a constant expression (`0.1`, `-(2)`, `1/4`), or None when it is not one."""
    try:
        return evaluate.value(node)
    except (evaluate.NotStatic, TypeError, ValueError):
        return None


def runtime(graph: RecipeGraph):
    problems = []
    for node in graph.symbols.runtimes:
        calls.check_kwargs(node.kwargs, RUNTIME_ARGS, "`runtime`", node.span, problems)
        amp = next((k for k in node.kwargs if k.name.text == "amp"), None)
        if amp is not None:
            modes = "`amp=` is one of " + ", ".join(f'"{m}"' for m in AMP_MODES)
            if not isinstance(amp.value, ast.Str):
                problems.append(error("`amp=` takes a string", amp.value.span, hint=modes))
            elif amp.value.value not in AMP_MODES:
                problems.append(error(f'unknown amp mode "{amp.value.value}"', amp.value.span, hint=modes))
    return problems


PASSES = [cycles, unused, schedules, stages, report, runtime]
