"""The `build` pass: a checked recipe graph becomes the resolved IR (`kdlang.ir.nodes.Program`).

Requires: a recipe the checker passed without errors (names resolve, values are in range, the
data-flow graph is acyclic). Ensures: `verify.verify(program)` holds; every static value was
evaluated here, by `kdlang.graph.evaluate`, the one evaluator the checker also uses.

This is the only module of `kdlang.ir` that reads the AST: the bridge between the front end and
every layer after it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, NoReturn, cast

import attrs
import networkx as nx

from kdlang.diagnostics import SourceMap
from kdlang.graph import evaluate
from kdlang.graph.evaluate import NotStatic
from kdlang.graph.graph import RecipeGraph
from kdlang.graph.render import to_dot
from kdlang.graph.symbols import Symbols
from kdlang.ir import nodes as N
from kdlang.ir import terms as T
from kdlang.library import branches, catalog
from kdlang.library.datasets import DEFAULT_BATCH
from kdlang.library.schedules import Schedule
from kdlang.source import Span
from kdlang.syntax import ast
from kdlang.syntax.formatter import format_expr

AUGMENT_KEYS = ("augment", "test_augment")  # a data declaration's lists of calls, not values
COMPONENT_KINDS = ("model", "granularity", "branch")

Env = dict[str, dict[str, Any]]  # a comprehension's loop variable -> its level: granularity, name, arguments


def build(graph: RecipeGraph, *, seed: int | None = None, diagram: bool = True) -> N.Program:
    """The IR of a checked recipe; `seed` overrides the recipe's `runtime(seed=...)`. Without
    `diagram` the program's `dot` is empty: the language server checks on every pause in typing
    and never draws, and the drawing is a sixth of a check."""
    return _Builder(graph).program(seed, diagram)


class _Builder:
    def __init__(self, graph: RecipeGraph):
        self.graph = graph
        self.symbols = graph.symbols
        self.data: dict[str, N.Data] = {}
        self.components: dict[str, N.Component] = {}
        self.taps: dict[str, N.Tap] = {}
        self.terms: dict[str, T.Term] = {}

    def program(self, seed: int | None, diagram: bool) -> N.Program:
        program, symbols = self.graph.program, self.symbols
        for decl in symbols.of_kind("data"):
            self.data[decl.key] = self._data(decl.key, cast(ast.Data, decl.node))
        default = self.data.get("data") or next(iter(self.data.values()), None)
        model_data = self._model_data()
        flow = [k for k in nx.lexicographical_topological_sort(self.graph.flow()) if k in symbols.decls]
        for key in flow:  # models before the taps, granularities and branches that read them
            decl = symbols.decls[key]
            if decl.kind == "model":
                self.components[key] = self._model(decl.node, self.data.get(model_data.get(key, "")) or default)
            elif decl.kind == "tap":
                model = self.components[decl.node.model.text]
                assert isinstance(model, N.Model)  # the checker resolved the tap's model to a model
                self.taps[key] = N.Tap(key, model, decl.node.layer.text, decl.node.name.span, decl.node.layer.span)
            elif decl.kind == "granularity":
                self.components[key] = self._granularity(decl.node)
            elif decl.kind == "branch":
                self.components[key] = self._branch(decl.node)
        declared_components = [d.key for d in symbols.decls.values() if d.kind in COMPONENT_KINDS]
        declared = [d for d in symbols.decls.values() if d.kind in ("excite", "loss")]
        for decl in declared:
            self.terms[decl.key] = _Expander(symbols, decl.key).expand(decl.node.value)
        excites = {d.key: N.Excite(d.key, d.name, self.terms[d.key], d.span) for d in declared if d.kind == "excite"}
        losses = {d.key: N.Loss(d.key, d.name, self.terms[d.key], d.span) for d in declared if d.kind == "loss"}
        runtime = {k.name.text: self._kwarg(k) for node in symbols.runtimes for k in node.kwargs}
        if seed is None:
            seed = int(runtime["seed"].value) if "seed" in runtime else 0
        meaning = repr(program.statements)  # spans and comments take no part
        return N.Program(
            title=program.title or _stem(program.root.file), path=program.root.file, meaning=meaning,
            sources=SourceMap({f.file: program.sources.get(f.file, "") for f in program.files}),
            data=self.data, components={k: self.components[k] for k in declared_components},
            flow=tuple(k for k in flow if k in self.components), taps=self.taps, excites=excites, losses=losses,
            stages=tuple(self._stage(name, excites, losses) for name in self.graph.stages), report=self._report(),
            runtime=runtime, seed=int(seed), dot=to_dot(self.graph) if diagram else "")

    # ---- values -------------------------------------------------------------------------
    def _value(self, node: ast.Expr, span: Span | None = None) -> N.Value:
        return N.Value(evaluate.value(node, self.symbols), format_expr(node), span or node.span)

    def _kwarg(self, kwarg: ast.KwArg) -> N.Value:
        return self._value(kwarg.value, kwarg.span)

    def _call(self, call: ast.Call, skip: tuple[str, ...] = ()) -> N.Call:
        kwargs: dict[str, N.Value] = {}
        for kwarg in call.kwargs:
            if kwarg.name.text in skip:
                continue
            try:
                kwargs[kwarg.name.text] = self._kwarg(kwarg)
            except NotStatic:  # a loss-valued argument: only losses take those, as terms
                continue
        return N.Call(call.name, tuple(self._value(a) for a in call.args), kwargs, call.span)

    @staticmethod
    def _checkpoint(node: ast.Checkpoint | None) -> N.Checkpoint | None:
        if node is None:
            return None
        return N.Checkpoint(node.path, node.stage.text if node.stage is not None else None, node.span, node.key)

    # ---- declarations -------------------------------------------------------------------
    def _data(self, name: str, node: ast.Data) -> N.Data:
        call = self._call(node.source, skip=AUGMENT_KEYS)
        root = call.kwargs.get("root")
        if root is not None and isinstance(root.value, str):  # a folder beside the recipe, else as given
            call.kwargs["root"] = attrs.evolve(root, value=_beside(node.span.file, root.value))
        lists = [tuple(self._call(item) for item in node.source.list_items(key)) for key in AUGMENT_KEYS]
        return N.Data(name, call, lists[0], lists[1], int(call.get("batch", DEFAULT_BATCH)),
                      int(call.get("workers", 0)), node.span)

    def _model_data(self) -> dict[str, str]:
        """Model -> the data key of the first stage that trains it or reads it."""
        found: dict[str, str] = {}
        graph = self.graph
        for stage in graph.stages:
            readers = graph.stage_losses(stage) + graph.stage_excites(stage) + graph.evaluated_in(stage)
            used = set(graph.trained_in(stage)).union(*(graph.components(k) for k in readers))
            for name in sorted(used):
                found.setdefault(name, graph.stage_data(stage))
        return found

    def _model(self, node: ast.Model, data: N.Data | None) -> N.Model:
        prefix, _, name = node.source.name.partition(".")
        source = name if prefix == "zoo" else node.source.name
        call = self._call(node.source)
        weights = call.kwargs.get("pretrained_file")
        if weights is not None and isinstance(weights.value, str):  # beside the recipe, like `from`
            call.kwargs["pretrained_file"] = attrs.evolve(weights, value=_beside(node.span.file, weights.value))
        return N.Model(node.name.text, call, source, data, self._checkpoint(node.checkpoint), node.name.span)

    def _granularity(self, node: ast.Granularity) -> N.Granularity:
        name = node.name.text
        levels = tuple(N.Level(level, _int(args["code"]), float(args["T"]), _int(args["hidden"]))
                       for level, args in evaluate.level_args(self.symbols, name).items())
        evaluated = any(name in self.graph.evaluated_in(stage) for stage in self.graph.stages)
        read = "logits" in self.graph.resolution.outputs_used.get(name, set())
        written = {(level.name.text, k.name.text): self._kwarg(k) for level in node.levels for k in level.kwargs}
        return N.Granularity(name, self.taps[node.tap.text], levels, node.mirrors.text if node.mirrors else None,
                             written, read, read or evaluated, self._checkpoint(node.checkpoint), node.name.span,
                             node.tap.span)

    def _branch(self, node: ast.Branch) -> N.Branch:
        return N.Branch(node.name.text, self.taps[node.tap.text], self._call(node.source),
                        branches.outputs(node.source.name),
                        self._checkpoint(node.checkpoint), node.name.span)

    def _stage(self, name: str, excites: dict[str, N.Excite], losses: dict[str, N.Loss]) -> N.Stage:
        graph, node = self.graph, self.graph.decl(name).node
        data = self.data[graph.stage_data(name)]
        written = {k.name.text: (N.Value(data.name, format_expr(k.value), k.span) if k.name.text == "data"
                                 else self._kwarg(k)) for k in node.kwargs}
        epochs = written.get("epochs")
        batch = written["batch"].value if "batch" in written else None
        clip = written["grad_clip"].value if "grad_clip" in written else None
        optimizer, lr = node.of(ast.Optimizer), node.of(ast.Lr)
        return N.Stage(
            name=name, data=data, evaluation_only=node.evaluation_only, epochs=epochs,
            batch=int(batch or data.batch), optimizer=self._call(optimizer[0].call) if optimizer else None,
            lr=self._call(lr[0].call) if lr else None, grad_clip=None if clip is None else float(clip),
            written=written,
            trains=tuple(graph.trained_in(name)), evaluates=tuple(graph.evaluated_in(name)),
            evaluate_spans=self._evaluate_spans(name, node),
            losses=tuple(losses[k] for k in graph.stage_losses(name)),
            excites=tuple(excites[k] for k in graph.stage_excites(name)), span=node.name.span)

    def _evaluate_spans(self, stage: str, node: ast.Stage) -> tuple[tuple[str, Span], ...]:
        evaluated = self.graph.evaluated_in(stage)
        mentions: list[tuple[str, Span]] = []
        for item in node.of(ast.Evaluate):
            for written in item.names:
                decl = self.symbols.lookup(written.text)
                if decl is not None and decl.key in evaluated:
                    mentions.append((decl.key, written.span))
        return tuple(mentions)

    def _report(self) -> N.Report:
        if not self.symbols.reports:
            return N.Report()
        node = self.symbols.reports[0]
        return N.Report(
            metrics=tuple(m.text for m in node.metrics), split=node.split.text,
            select=node.select.text if node.select else "last",
            select_split=node.select_split.text if node.select_split else node.split.text,
            noise=tuple(float(evaluate.value(n)) for n in node.noise.items) if node.noise else ())


def _beside(recipe: str, written: str) -> str:
    """A relative path as the recipe means it: relative to the recipe's folder when it exists
    there, else to the working directory (like `from "file"`)."""
    path = Path(written)
    beside = Path(recipe).parent / path
    return str(beside) if not path.is_absolute() and beside.exists() else written


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _stem(file: str) -> str:
    return Path(file).stem


def digest(program: N.Program) -> str:
    """A short fingerprint of what the recipe means (not how it is laid out)."""
    return hashlib.sha256(program.meaning.encode()).hexdigest()[:16]


# ---- loss and excitation expressions --------------------------------------------------------
class _Expander(ast.Visitor):
    """Expands one declaration's expression into a term tree; loss instances are numbered within
    the declaration (`distill.codes#1`), which names their modules and checkpoint entries. `env`
    binds a comprehension's loop variable while its body is expanded."""

    def __init__(self, symbols: Symbols, owner: str):
        self.symbols = symbols
        self.owner = owner
        self.scope = owner.split(".")[0] if "." in owner else None
        self.count = 0
        self.env: Env = {}

    def expand(self, node: ast.Expr, env: Env | None = None) -> T.Term:
        outer, self.env = self.env, (self.env if env is None else env)
        try:
            static = _static(node, self.symbols, self.env)
            return static if static is not None else self.visit(node)
        finally:
            self.env = outer

    def generic_visit(self, node: object) -> NoReturn:
        raise ValueError(f"cannot expand {type(node).__name__}")

    def visit_BinOp(self, node: ast.BinOp) -> T.Term:
        return T.TBin(node.op, self.expand(node.left), self.expand(node.right))

    def visit_Neg(self, node: ast.Neg) -> T.Term:
        return T.TBin("*", T.TScalar(-1.0, "-1"), self.expand(node.operand))

    def visit_ListExpr(self, node: ast.ListExpr) -> T.Term:
        return T.TList(tuple(self.expand(item) for item in node.items))

    def visit_Ref(self, node: ast.Ref) -> T.Term:
        return self._ref(node, self.env)

    def visit_Call(self, node: ast.Call) -> T.Term:
        return self._call(node, self.env)

    def _ref(self, node: ast.Ref, env: Env) -> T.Term:
        head = node.head.text
        decl = self.symbols.lookup(head, self.scope)
        if head in env and decl is None:
            bound = env[head]
            return T.TTensor(f"{bound['granularity']}.{bound['name']}.{node.trail[0].text}", node.span)
        if head == "label" and decl is None:
            return T.TLabels()
        if head == "index" and decl is None:
            return T.TIndex()
        assert decl is not None  # the checker resolved every other name
        if decl.kind in ("tap", "excite"):
            return T.TTensor(decl.key, node.span)
        if decl.kind == "branch":
            output = node.trail[0].text if node.trail else \
                branches.outputs(cast(ast.Branch, decl.node).source.name)[0]
            return T.TTensor(f"{head}.{output}", node.span)
        if decl.kind == "granularity":
            first, attr = node.trail[0], node.trail[-1].text
            if isinstance(first, ast.Name):
                level = first.text
            elif first.head.text in env:  # `smg[l]` with `l` a loop variable
                level = env[first.head.text]["name"]
            else:  # `smg[mg.fine]`: the level of that name
                level = first.trail[0].text
            return T.TTensor(f"{head}.{level}.{attr}", node.span)
        raise ValueError(f"`{head}` is not a tensor")

    def _call(self, node: ast.Call, env: Env) -> T.Term:
        name = node.name
        if name in catalog.loss_names():
            self.count += 1
            inputs = tuple(self.expand(a, env) for a in node.args)
            tensors = tuple(i for i in inputs if isinstance(i, (T.TTensor, T.TList)))
            hyper: dict[str, object] = {}
            for kwarg in node.kwargs:
                scalar = _static(kwarg.value, self.symbols, env)
                hyper[kwarg.name.text] = scalar if scalar is not None else evaluate.value(kwarg.value, self.symbols, env)
            return T.TLoss(f"{self.owner}#{self.count}", name, tensors, hyper, node.span)
        if name == "mix":
            heads = tuple(self.expand(h, env) for h in node.args[0].items)
            normalize = node.kwarg("normalize")
            return T.TMix(heads, tuple(self.expand(w, env) for w in node.kwarg("weights").value.items),
                          True if normalize is None else bool(evaluate.value(normalize.value)))
        items: list[T.Term] = []
        for arg in node.args:
            if isinstance(arg, ast.Comprehension):
                granularity = arg.iterable.head.text
                for level, args in evaluate.level_args(self.symbols, granularity).items():
                    bound = {**env, arg.var.text: {"granularity": granularity, "name": level, **args}}
                    items.append(self.expand(arg.body, bound))
            else:
                items.append(self.expand(arg, env))
        return T.TReduce(name, tuple(items))


def _static(node: ast.Expr, symbols: Symbols, env: Env) -> T.TScalar | None:
    """A weight: a number or a schedule, with the text the recipe wrote; None for anything else."""
    if isinstance(node, (ast.Str, ast.Bool)):
        return None
    try:
        value = evaluate.value(node, symbols, env)
    except (NotStatic, TypeError, KeyError, AttributeError):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return T.TScalar(float(value), format_expr(node))
    if isinstance(value, Schedule):
        return T.TScalar(value, format_expr(node))
    return None
