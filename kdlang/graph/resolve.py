"""Name resolution and typing of every expression in the recipe.

For each declaration it records what the declaration refers to (the graph's data-flow edges) and
what its value is (a tensor, a loss, a schedule...), diagnosing unknown names, misuse and bad calls.
"""

from __future__ import annotations

import math

import attrs

from kdlang.diagnostics import Diagnostic, Note, error
from kdlang.graph import calls, evaluate
from kdlang.graph import types as T
from kdlang.graph.symbols import BUILTINS, Decl, Symbols, a_kind, kinds
from kdlang.graph.types import ERR, Ty, merge
from kdlang.library import catalog, extensions
from kdlang.library.optimizers import LR_SCHEDULES, OPTIMIZERS
from kdlang.library.signatures import (
    COMBINATORS,
    LEVEL_ARGS,
    MAX_SAMPLE_ELEMENTS,
    NO_DEFAULT,
    REDUCERS,
    SCHEDULE_KEYWORD_KINDS,
    Signature,
    Value,
    did_you_mean,
    value_rule,
)
from kdlang.library.schedules import Schedule
from kdlang.syntax import ast
from kdlang.syntax.parser import MAX_DEPTH

MAX_CHAIN = 64  # declarations reading one another (`mirrors`, schedules of schedules), each a few frames deep
_TOO_LONG = "declarations read each other too deeply"

LEVEL_OUTPUTS = {"code": "the level's code (encoder output)", "logits": "the level's logits (decoder output)"}


@attrs.define
class Resolution:
    """What resolution learnt: per-declaration references and types, and granularity outputs used."""

    refs: dict = attrs.field(factory=dict)  # decl key -> set of decl keys it reads
    types: dict = attrs.field(factory=dict)  # decl key -> Ty
    outputs_used: dict = attrs.field(factory=dict)  # granularity/branch key -> set of outputs read
    teacher_inputs: dict = attrs.field(factory=dict)  # loss key -> components on the teacher side
    evaluated: dict = attrs.field(factory=dict)  # stage key -> components its `evaluate` items name, in order
    external: set = attrs.field(factory=set)  # names a fragment reads from the recipes that use it


class Resolver(ast.Visitor):
    def __init__(self, symbols: Symbols, open_names: bool = False):
        self.symbols = symbols
        self.open_names = open_names  # a fragment: an unknown name is one the using recipe declares
        self.problems: list[Diagnostic] = []
        self.result = Resolution()
        self._current: str | None = None
        self._scope: str | None = None
        self._loop: dict[str, Ty] = {}
        self._in_progress: set[str] = set()
        self._depth = 0  # expressions being resolved, counting through the declarations they read
        self._reached = 0  # the deepest `_depth` reached so far
        self._heights: dict[str, int] = {}  # decl key -> how deep its value nests, declarations included

    # ---- driver -------------------------------------------------------------------------
    def run(self) -> Resolution:
        for decl in list(self.symbols.decls.values()):
            self.decl_type(decl)
        for node in self.symbols.runtimes:
            self._check_values(node.kwargs, "runtime", "runtime", skip=("amp",))
        return self.result

    def decl_type(self, decl: Decl) -> Ty:
        """The type of a declaration, resolving it on first use (so order of declaration is free)."""
        if decl.key in self.result.types:
            return self.result.types[decl.key]
        if decl.key in self._in_progress:  # a cycle: the cycles pass reports it with the whole loop
            return ERR
        if len(self._in_progress) >= MAX_CHAIN:  # reported once: the rest of a long chain says nothing new
            if not any(p.message.startswith(_TOO_LONG) for p in self.problems):
                self._error(f"{_TOO_LONG} (limit {MAX_CHAIN})", decl.span,
                            hint="each reads the next: build it from fewer layers of declarations")
            self.result.types[decl.key] = ERR
            return ERR
        self._in_progress.add(decl.key)
        saved = (self._current, self._scope, self._loop)
        self._current, self._scope, self._loop = decl.key, decl.scope, {}
        self.result.refs.setdefault(decl.key, set())
        start, reached, self._reached = self._depth, self._reached, self._depth
        try:
            ty = getattr(self, f"_decl_{decl.kind}")(decl.node)
        finally:
            self._current, self._scope, self._loop = saved
            self._in_progress.discard(decl.key)
            self._heights[decl.key] = self._reached - start
            self._reached = max(reached, self._reached)
        self.result.types[decl.key] = ty
        return ty

    def _refer(self, decl: Decl, node=None) -> Ty:
        if self._current is not None:
            self.result.refs.setdefault(self._current, set()).add(decl.key)
        depth = self._depth + self._heights.get(decl.key, 0)
        self._reached = max(self._reached, depth)
        known = self.result.types.get(decl.key)
        if node is not None and depth > MAX_DEPTH and known is not None and known.kind != T.ERROR:
            return self._too_deep(node.span, f"`{decl.name}` is nested {self._heights[decl.key]} deep already: "
                                  "build the value from fewer layers of declarations")
        return self.decl_type(decl)

    def _error(self, message, span, **kw):
        self.problems.append(error(message, span, **kw))
        return ERR

    def _too_deep(self, span, hint: str) -> Ty:
        return self._error(f"expression nested too deeply (limit {MAX_DEPTH}), counting the declarations it reads",
                           span, hint=hint)

    # ---- declarations -------------------------------------------------------------------
    def _decl_data(self, node: ast.Data) -> Ty:
        from kdlang.library import datasets

        call = node.source
        calls.check_data(call, self.problems)
        if call.name in datasets.names():
            defaults = {**datasets.info(call.name).kwargs, **catalog.DATA_LOADER_KWARGS}
            if self._check_values(call.kwargs, "data", call.name, defaults):
                self._check_data_sizes(call)
            self._check_augmentations(call)
        return Ty("data")

    def _check_augmentations(self, call: ast.Call) -> None:
        """The values of `augment=` and `test_augment=` items (`calls` checks `augment=`'s names)."""
        test_augment = call.kwarg("test_augment")
        if test_augment is not None:
            calls.check_augmentations(test_augment.value, self.problems)
        for key in ("augment", "test_augment"):
            for item in call.list_items(key):
                if isinstance(item, ast.Call):
                    self._check_values(item.kwargs, "augment", item.name)

    def _check_data_sizes(self, call: ast.Call) -> None:
        """What no single keyword shows: `val=` leaves images to train on, a sample is not absurdly big."""
        from kdlang.library import datasets

        values = {k.name.text: (k, evaluate.value(k.value)) for k in call.kwargs
                  if k.name.text in ("shape", "val", "size")}
        shape = values.get("shape")
        if shape is not None and math.prod(shape[1]) > MAX_SAMPLE_ELEMENTS:
            self._error(f"a sample of shape {shape[1]} holds {math.prod(shape[1])} numbers, more than the "
                        f"{MAX_SAMPLE_ELEMENTS} kdlang allows", shape[0].value.span,
                        hint="use a smaller shape, e.g. `shape=[3, 32, 32]`")
        val = values.get("val")
        size = values.get("size", (None, None))[1]
        train = datasets.train_size(call.name, size)
        if val is not None and val[1] >= train:
            self._error(f"`val=` holds out {val[1]} images, but `{call.name}` has only {train} training images",
                        val[0].value.span, hint=f"`val=` takes a whole number from 0 to {train - 1}, leaving "
                        "the rest to train on (e.g. `val=5000`)")

    def _decl_model(self, node: ast.Model) -> Ty:
        calls.check_model(node.source, self.problems)
        defaults = _model_defaults(node.source.name)
        if defaults is not None:
            self._check_values(node.source.kwargs, "model", node.source.name, defaults)
        if node.checkpoint and node.checkpoint.stage:
            self._lookup_kind(node.checkpoint.stage, "stage", record=False)
        return Ty("model", frozenset({node.name.text}))

    def _decl_tap(self, node: ast.Tap) -> Ty:
        model = self._lookup_kind(node.model, "model")
        if model is None:
            return ERR
        return Ty(T.TENSOR, frozenset({node.model.text}))

    def _decl_granularity(self, node: ast.Granularity) -> Ty:
        tap = self._lookup_kind(node.tap, "tap")
        tap_ty = self._refer(tap) if tap else ERR
        self._checkpoint_stage(node.checkpoint)
        if node.mirrors is not None:
            if node.levels:
                self._error("a mirroring granularity takes its levels from the one it mirrors",
                            node.levels[0].span, hint=f"remove the levels, or drop `mirrors {node.mirrors.text}`")
            other = self._lookup_kind(node.mirrors, "granularity")
            if other:
                self._refer(other)
        elif not node.levels:
            self._error(f"granularity `{node.name.text}` has no levels", node.name.span,
                        hint="add `{ level fine code=64 T=2 }`, or mirror another granularity")
        seen = {}
        for level in node.levels:
            if level.name.text in seen:
                self._error(f"level `{level.name.text}` is declared twice", level.name.span,
                            notes=[Note("first declared here", seen[level.name.text])])
            seen[level.name.text] = level.name.span
            calls.check_kwargs(level.kwargs, LEVEL_ARGS, f"level `{level.name.text}`", level.name.span, self.problems)
            self._check_values(level.kwargs, "level", "level")
        return Ty("granularity", tap_ty.components | {node.name.text})

    def _decl_branch(self, node: ast.Branch) -> Ty:
        tap = self._lookup_kind(node.tap, "tap")
        tap_ty = self._refer(tap) if tap else ERR
        calls.check_branch(node.source, self.problems)
        self._check_values(node.source.kwargs, "branch", node.source.name)
        self._checkpoint_stage(node.checkpoint)
        return Ty("branch", tap_ty.components | {node.name.text})

    def _checkpoint_stage(self, checkpoint) -> None:
        if checkpoint is not None and checkpoint.stage is not None:
            self._lookup_kind(checkpoint.stage, "stage", record=False)

    def _decl_schedule(self, node: ast.Schedule) -> Ty:
        ty = self.expr(node.value)
        if ty.kind not in (T.NUMBER, T.SCHEDULE, T.ERROR):
            return self._error(f"schedule `{node.name.text}` is {ty.describe()}, not a number or schedule",
                               node.value.span, hint="e.g. `linear(0 -> 1, epochs=0..10)`")
        return ty if ty.kind == T.ERROR else Ty(T.SCHEDULE, value=ty.value)

    def _decl_excite(self, node: ast.Excite) -> Ty:
        ty = self.expr(node.value)
        if ty.kind not in (T.TENSOR, T.ERROR):
            return self._error(f"excitation `{node.name.text}` is {ty.describe()}, not a tensor",
                               node.value.span, hint="e.g. `mean(t_logits, mg.fine.logits, mg.coarse.logits)`")
        return ty

    def _decl_loss(self, node: ast.Loss) -> Ty:
        ty = self.expr(node.value)
        if ty.kind not in (T.LOSS, T.ERROR):
            return self._error(f"loss `{node.name.text}` is {ty.describe()}, not a loss",
                               node.value.span, hint="call a library loss, e.g. `kd(s_logits, t_logits, T=4)`")
        return ty

    def _decl_stage(self, node: ast.Stage) -> Ty:
        calls.check_stage(node, self.problems)
        # an evaluation stage's `epochs=` (none, or 0) is the stages pass's to judge
        self._check_values(node.kwargs, "stage", "stage", skip=("data", "epochs") if node.evaluation_only else ("data",))
        if not node.evaluation_only:
            self._check_training_calls(node)
        components = set()
        evaluated = self.result.evaluated.setdefault(node.name.text, [])
        for item in node.items:
            if isinstance(item, (ast.Train, ast.Evaluate)):
                verb = "train" if isinstance(item, ast.Train) else "are evaluated"
                for name in item.names:
                    decl = self._lookup(name)
                    if decl is None:
                        continue
                    if decl.kind not in ("model", "granularity", "branch"):
                        self._error(f"`{name.text}` is {a_kind(decl.kind)}; only models, granularities and branches {verb}",
                                    name.span, notes=[Note("declared here", decl.span)])
                        continue
                    if isinstance(item, ast.Train):
                        components.add(decl.key)
                    else:
                        evaluated.append(decl.key)
            elif isinstance(item, ast.Losses):
                for name in item.names:
                    self._lookup_kind(name, "loss")
            elif isinstance(item, (ast.Loss, ast.Excite)):
                decl = self.symbols.lookup(item.name.text, node.name.text)
                if decl is not None and decl.node is item:
                    self._refer(decl)
        data_arg = next((k for k in node.kwargs if k.name.text == "data"), None)
        if data_arg is not None:
            if isinstance(data_arg.value, ast.Ref) and not data_arg.value.trail:
                self._lookup_kind(data_arg.value.head, "data")
            else:
                self._error("`data=` names a data declaration", data_arg.value.span, hint="e.g. `data=probe`")
        return Ty("stage", frozenset(components))

    def _check_training_calls(self, node: ast.Stage) -> None:
        """The optimizer's and lr schedule's values (`calls` reports schedules among them)."""
        for kind, table, family in ((ast.Optimizer, OPTIMIZERS, "optimizer"), (ast.Lr, LR_SCHEDULES, "lr")):
            call = next((item.call for item in node.of(kind)), None)
            if call is None or call.name not in table:
                continue
            ok = self._check_values(call.kwargs, family, call.name, schedules_reported=True)
            for param, arg in zip(table[call.name].positional, call.args):
                ok = self._check_value(arg, param, value_rule(family, call.name, param), True) and ok
            if ok and family == "optimizer":
                self._check_nesterov(call)

    def _check_nesterov(self, call: ast.Call) -> None:
        """torch's SGD refuses Nesterov momentum without momentum."""
        nesterov, momentum = call.kwarg("nesterov"), call.kwarg("momentum")
        if nesterov is not None and evaluate.value(nesterov.value) is True and (
                momentum is None or not evaluate.value(momentum.value)):
            self._error("Nesterov momentum needs a momentum", nesterov.value.span,
                        hint="add e.g. `momentum=0.9`, or drop `nesterov=true`")

    # ---- values -------------------------------------------------------------------------
    def _check_values(self, kwargs, family: str, function: str, defaults=None, skip=(),
                      schedules_reported=False) -> bool:
        """Each keyword's value against its rule (`signatures.VALUES`), so that the checker accepts only
        values the runtime can run; True when every value passes."""
        ok = True
        for kwarg in kwargs:
            key = kwarg.name.text
            default = (defaults or {}).get(key, NO_DEFAULT)
            rule = None if key in skip else value_rule(family, function, key, default)
            if rule is not None:
                ok = self._check_value(kwarg.value, key, rule, schedules_reported) and ok
        return ok

    def _check_value(self, node, key: str, rule: Value | None, schedules_reported=False) -> bool:
        """One value against its rule: a positioned error with the valid range when it fails."""
        if rule is None:
            return True
        try:
            value = evaluate.value(node, self.symbols)
        except evaluate.NotStatic:
            value = _NOT_STATIC
        except (TypeError, ValueError, ArithmeticError) as exc:
            if not rule.schedule:  # a schedule's own arguments are the schedules pass's to explain
                self._error(f"`{key}=` cannot be computed: {exc}", node.span, hint=f"`{key}=` takes {rule.describe()}")
            return False
        if rule.accepts(value):
            return True
        if schedules_reported and (value is _NOT_STATIC or isinstance(value, Schedule)):
            return False  # `calls` says that these arguments are plain values
        near = rule.near_miss(value)  # a misspelt choice: say which one was meant
        self._error(f"`{key}=` must be {rule.noun()}, not {_shown(value, node)}", node.span,
                    hint=f"{near + ' ' if near else ''}`{key}=` takes {rule.describe()}")
        return False

    # ---- lookups ------------------------------------------------------------------------
    def _visible_names(self):
        names = {d.name for d in self.symbols.decls.values() if d.scope in (None, self._scope)}
        return names | set(BUILTINS) | set(self._loop)

    def _lookup(self, name: ast.Name) -> Decl | None:
        decl = self.symbols.lookup(name.text, self._scope)
        if decl is None and name.text in BUILTINS:
            self._error(f"`{name.text}` is the batch's {BUILTINS[name.text]}, not a declaration", name.span,
                        hint="it can only be passed to a loss, e.g. `ce(s_logits, label)`")
        elif decl is None and self.open_names:
            self.result.external.add(name.text)
        elif decl is None:
            self._error(f"unknown name `{name.text}`", name.span,
                        hint=did_you_mean(name.text, self._visible_names(), "declared names"))
        return decl

    def _lookup_kind(self, name: ast.Name, kind: str, record: bool = True) -> Decl | None:
        decl = self._lookup(name)
        if decl is None:
            return None
        if decl.kind != kind:
            self._error(f"`{name.text}` is {a_kind(decl.kind)}, not {a_kind(kind)}", name.span,
                        notes=[Note(f"`{name.text}` is declared here", decl.span)],
                        hint=self._kind_hint(name.text, decl, kind))
            return None
        if record and self._current is not None:
            self.result.refs.setdefault(self._current, set()).add(decl.key)
        return decl

    def _kind_hint(self, name: str, decl: Decl, kind: str) -> str:
        """What to write instead of a name of the wrong kind: for a model where a tap is expected,
        the taps already declared on that model."""
        if decl.kind == "model" and kind == "tap":
            taps = [d.name for d in self.symbols.of_kind("tap") if d.node.model.text == name]
            if taps:
                return f"use a tap on `{name}`: " + ", ".join(f"`{t}`" for t in taps)
            return f"declare a tap on it first: `tap feat = {name}.LAYER`"
        return did_you_mean(name, [d.name for d in self.symbols.of_kind(kind)], kinds(kind))

    # ---- expressions --------------------------------------------------------------------
    def expr(self, node) -> Ty:
        self._depth += 1
        self._reached = max(self._reached, self._depth)
        try:
            if self._depth > MAX_DEPTH:  # only through declarations: the parser bounds one expression
                return self._too_deep(node.span, "build the value from fewer layers of declarations")
            return super().visit(node)
        finally:
            self._depth -= 1

    def visit_Num(self, node):
        return Ty(T.NUMBER, value=node.value)

    def visit_Str(self, node):
        return Ty(T.STRING, value=node.value)

    def visit_Bool(self, node):
        return Ty(T.BOOL, value=node.value)

    def visit_NoneLit(self, node):
        return Ty(T.NONE)

    def visit_ListExpr(self, node):
        return merge(T.LIST, *(self.expr(item) for item in node.items))

    def visit_Arrow(self, node):
        return self._pair(node, T.ARROW)

    def visit_Range(self, node):
        return self._pair(node, T.RANGE)

    def _pair(self, node, kind):
        start, end = self.expr(node.start), self.expr(node.end)
        for part, ty in ((node.start, start), (node.end, end)):
            if ty.kind not in (T.NUMBER, T.ERROR):
                return self._error(f"{T.DESCRIPTIONS[kind]} needs numbers at both ends, not {ty.describe()}", part.span)
        return Ty(kind)

    def visit_Neg(self, node):
        ty = self.expr(node.operand)
        if ty.kind == T.NUMBER:
            return Ty(T.NUMBER, value=-ty.value if ty.value is not None else None)
        if ty.kind in (T.SCHEDULE, T.ERROR):
            return ty
        return self._error(f"cannot negate {ty.describe()}", node.span,
                           hint="loss weights must be non-negative" if ty.kind == T.LOSS else None)

    def visit_BinOp(self, node):
        left, right = self.expr(node.left), self.expr(node.right)
        if T.ERROR in (left.kind, right.kind):
            return ERR
        kinds = (left.kind, right.kind)
        if kinds == (T.NUMBER, T.NUMBER):
            return Ty(T.NUMBER, value=evaluate.arithmetic(node.op, left.value, right.value))
        if left.scalar and right.scalar:
            return Ty(T.SCHEDULE)
        if node.op == "-" and kinds == (T.LOSS, T.LOSS):
            return self._error("cannot subtract a loss: it would be maximised", node.span,
                               hint="losses add, with non-negative weights: `ce(s, label) + 0.5 * kd(s, t)`")
        scaled = {"*": (True, True), "/": (True, False)}.get(node.op)
        for value_kind in (T.LOSS, T.TENSOR):
            if scaled and ((left.kind == value_kind and right.scalar) or (scaled[1] and right.kind == value_kind and left.scalar)):
                return merge(value_kind, left, right)
            if node.op in "+-" and kinds == (value_kind, value_kind):
                return merge(value_kind, left, right)
        verb = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}[node.op]
        hint = None
        if T.LOSS in kinds and node.op in "*/":
            hint = "weight a loss by a number or a schedule: `0.9 * kd(s, t)`"
        elif T.LOSS in kinds:
            hint = "losses add to losses: `ce(s, label) + kd(s, t)`"
        return self._error(f"cannot {verb} {left.describe()} and {right.describe()}", node.span, hint=hint)

    def visit_Ref(self, node: ast.Ref) -> Ty:
        head = node.head.text
        if head in self._loop and self.symbols.lookup(head, self._scope) is None:
            return self._level_trail(self._loop[head], node.trail, node)
        if head in BUILTINS and self.symbols.lookup(head, self._scope) is None:
            if node.trail:
                return self._error(f"`{head}` has no attributes", node.span)
            return Ty(T.LABELS if head == "label" else T.INDEX)
        decl = self._lookup(node.head)
        if decl is None:
            return ERR
        ty = self._refer(decl, node)
        if decl.kind in ("tap", "excite", "schedule"):
            if node.trail:
                return self._error(f"`{head}` is {a_kind(decl.kind)} and has no attributes", node.span)
            return ty if decl.kind != "tap" else Ty(T.TENSOR, ty.components)
        if decl.kind == "granularity":
            return self._granularity_trail(decl, ty, node)
        if decl.kind == "branch":
            return self._branch_trail(decl, ty, node)
        hint = {"model": f"read a tensor from it with a tap: `tap x = {head}.output`",
                "loss": "combine losses inside one `loss` declaration",
                "stage": None, "data": None}.get(decl.kind)
        return self._error(f"`{head}` is {a_kind(decl.kind)} and cannot be used in an expression", node.head.span,
                           notes=[Note("declared here", decl.span)], hint=hint)

    def _granularity_trail(self, decl: Decl, ty: Ty, node: ast.Ref) -> Ty:
        if not node.trail:
            return self._error(f"`{decl.name}` is a granularity; pick a level and an output",
                               node.span, hint=f"e.g. `{decl.name}.levels` in a `for`, or `{decl.name}.LEVEL.code`")
        first, rest = node.trail[0], node.trail[1:]
        if isinstance(first, ast.Name) and first.text == "levels":
            if rest:
                return self._error("`.levels` is only iterated over, in `for l in G.levels: ...`", node.span)
            return Ty(T.LEVELS, ty.components, granularity=decl.name)
        if isinstance(first, ast.Name):
            levels = level_names(self.symbols, decl.name)
            if first.text not in levels:  # reported, then read as some level so the stage checks still see `decl`
                self._error(f"granularity `{decl.name}` has no level `{first.text}`", first.span,
                            hint=did_you_mean(first.text, levels, "its levels"))
                return self._level_trail(Ty(T.LEVEL, ty.components, granularity=decl.name), rest, node)
            return self._level_trail(Ty(T.LEVEL, ty.components, granularity=decl.name, level=first.text), rest, node)
        index = self.expr(first)
        if index.kind == T.ERROR:
            return ERR
        if index.kind != T.LEVEL:
            return self._error(f"`{decl.name}[...]` takes a level, not {index.describe()}", first.span)
        if level_names(self.symbols, index.granularity) != level_names(self.symbols, decl.name):
            self._error(f"`{decl.name}` and `{index.granularity}` have different levels", first.span,
                        hint=f"declare `granularity {decl.name} on TAP mirrors {index.granularity}`")
        return self._level_trail(Ty(T.LEVEL, ty.components, granularity=decl.name, level=index.level), rest, node)

    def _level_trail(self, level: Ty, trail, node) -> Ty:
        if not trail:
            return level
        first = trail[0]
        if len(trail) > 1 or not isinstance(first, ast.Name):
            return self._error("a level has `.code`, `.logits` and `.T`", node.span)
        if first.text == "T":
            return Ty(T.NUMBER)
        if first.text not in LEVEL_OUTPUTS:
            return self._error(f"a granularity level has no `{first.text}`", first.span,
                               hint=did_you_mean(first.text, [*LEVEL_OUTPUTS, "T"], "a level has"))
        self.result.outputs_used.setdefault(level.granularity, set()).add(first.text)
        return Ty(T.TENSOR, level.components)

    def _branch_trail(self, decl: Decl, ty: Ty, node: ast.Ref) -> Ty:
        outputs = catalog.branch_outputs(decl.node.source.name)
        if not node.trail:
            self.result.outputs_used.setdefault(decl.name, set()).add(outputs[0])
            return Ty(T.TENSOR, ty.components)
        first = node.trail[0]
        if len(node.trail) > 1 or not isinstance(first, ast.Name) or first.text not in outputs:
            return self._error(f"branch `{decl.name}` has outputs {', '.join(outputs)}", node.span,
                               hint=did_you_mean(getattr(first, "text", ""), outputs, "its outputs"))
        self.result.outputs_used.setdefault(decl.name, set()).add(first.text)
        return Ty(T.TENSOR, ty.components)

    def visit_Comprehension(self, node: ast.Comprehension) -> Ty:
        return self._error("a `for` only goes inside `sum(...)` or `mean(...)`", node.span)

    def visit_KwArg(self, node):
        return self._error("keyword arguments only go inside calls", node.span)

    # ---- calls --------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> Ty:
        name = node.name
        if name in catalog.loss_names():
            return self._loss_call(node)
        if name in catalog.schedule_functions():
            return self._schedule_call(node)
        if name == "sum" or (name == "mean" and any(_mentions_loss(a) for a in node.args)):
            return self._reduce(node)
        if name in COMBINATORS:
            return self._combine(node)
        known = [*catalog.loss_names(), *catalog.schedule_functions(), *COMBINATORS, *REDUCERS]
        current = self.symbols.decls.get(self._current) if self._current else None
        what = "loss function" if current is not None and current.kind == "loss" else "function"
        namespace = calls.unknown_namespace(name)
        self._error(f"unknown {what} `{name}`", node.func.span,
                    hint=extensions.enable_hint(namespace) if namespace else
                    did_you_mean(name, known, "functions usable here"))
        self._resolve_arguments(node)
        return ERR

    def _resolve_arguments(self, node: ast.Call) -> None:
        """Resolve the arguments of a call that cannot be typed, so the names it reads count as used
        and unknown ones among them are still reported."""
        for arg in node.args:
            if not isinstance(arg, ast.Comprehension):
                self.expr(arg)
        self._kwarg_types(node)

    def _args(self, node: ast.Call) -> list[Ty]:
        return [self.expr(a) for a in node.args]

    def _kwarg_types(self, node: ast.Call) -> dict:
        return {k.name.text: self.expr(k.value) for k in node.kwargs}

    def _loss_call(self, node: ast.Call) -> Ty:
        info = catalog.loss_info(node.name)
        signature = Signature(node.name, (), dict(info.hyper))
        calls.check_kwargs(node.kwargs, signature, f"loss `{node.name}`", node.func.span, self.problems)
        hyper_ok = True
        for kwarg in node.kwargs:
            ty, key = self.expr(kwarg.value), kwarg.name.text
            accepted = _hyper_kinds(info.hyper[key]) if key in info.hyper else (ty.kind,)
            if ty.kind == T.ERROR:
                hyper_ok = False
            elif ty.kind not in accepted:
                hyper_ok = False
                self._error(f"`{key}=` of `{node.name}` must be "
                            + " or ".join(T.DESCRIPTIONS[k] for k in accepted) + f", not {ty.describe()}",
                            kwarg.value.span)
            elif key in info.hyper and ty.kind != T.ERROR:
                rule = value_rule("loss", node.name, key, info.hyper[key])
                if rule is not None and not rule.schedule:  # the schedules pass judges those per stage
                    hyper_ok = self._check_value(kwarg.value, key, rule) and hyper_ok
        tensors, extras, diagnosed = [], [], False
        for arg in node.args:
            if isinstance(arg, ast.Comprehension):
                self._error("a `for` only goes inside `sum(...)` or `mean(...)`", arg.span)
                diagnosed = True
                continue
            ty = self.expr(arg)
            if ty.kind in (T.LABELS, T.INDEX):
                extras.append((arg, ty))
            elif ty.kind == T.TENSOR or (ty.kind == T.LIST and info.multi):
                tensors.append((arg, ty))
            elif ty.kind == T.ERROR:
                diagnosed = True
            else:
                diagnosed = True
                self._error(f"`{node.name}` reads tensors; this is {ty.describe()}", arg.span,
                            hint=_tensor_hint(ty))
        if diagnosed:  # a bad argument was reported: counting the arguments would only repeat it
            return ERR
        wanted = 1 if info.unary else 2
        if len(tensors) != wanted:
            shape = "(x, label)" if info.unary else "(student, teacher)"
            return self._error(f"`{node.name}` takes {wanted} tensor argument{'s' if wanted > 1 else ''} "
                               f"{shape}, got {len(tensors)}", node.span, hint=info.summary)
        for arg, ty in extras:
            need = "labels" if ty.kind == T.LABELS else "index"
            if need not in info.needs:
                self._error(f"`{node.name}` does not use {ty.describe()}", arg.span)
        if info.unary and not any(ty.kind == T.LABELS for _, ty in extras) and "labels" in info.needs:
            pass  # labels are supplied implicitly
        if not hyper_ok:
            return ERR
        parts = [ty for _, ty in tensors]
        if not info.unary and self._current is not None:
            self.result.teacher_inputs.setdefault(self._current, set()).update(parts[1].components)
        return merge(T.LOSS, *parts)

    def _schedule_call(self, node: ast.Call) -> Ty:
        signature = catalog.schedule_functions()[node.name]
        calls.check_kwargs(node.kwargs, signature, f"`{node.name}`", node.func.span, self.problems)
        arg_types = self._args(node)
        types = arg_types + [self._schedule_keyword(node, kwarg) for kwarg in node.kwargs]
        if len(node.args) != len(signature.positional):
            return self._error(f"`{node.name}` takes {len(signature.positional)} positional argument(s), "
                               f"got {len(node.args)}", node.span, hint=signature.doc)
        for arg, ty, param in zip(node.args, arg_types, signature.positional):
            want = T.ARROW if param.endswith(":arrow") else T.NUMBER
            if ty.kind not in (want, T.ERROR):
                types.append(self._error(f"`{node.name}` expects {T.DESCRIPTIONS[want]} here, not {ty.describe()}",
                                         arg.span, hint=signature.doc))
        if any(t.kind == T.ERROR for t in types):
            return ERR
        return Ty(T.SCHEDULE)

    def _schedule_keyword(self, node: ast.Call, kwarg: ast.KwArg) -> Ty:
        """The type of one keyword of a schedule call, ERR (diagnosed) when it is the wrong kind."""
        ty = self.expr(kwarg.value)
        want = SCHEDULE_KEYWORD_KINDS.get(node.name, {}).get(kwarg.name.text)
        if want is None or ty.kind == T.ERROR:
            return ty
        doc = catalog.schedule_functions()[node.name].doc
        if ty.kind != want:
            return self._error(f"`{kwarg.name.text}=` of `{node.name}` takes {T.DESCRIPTIONS[want]}, "
                               f"not {ty.describe()}", kwarg.value.span, hint=doc)
        for item in kwarg.value.items if isinstance(kwarg.value, ast.ListExpr) else ():
            item_ty = self.expr(item)
            if item_ty.kind not in (T.NUMBER, T.ERROR):
                return self._error(f"`{kwarg.name.text}=` of `{node.name}` lists numbers, not {item_ty.describe()}",
                                   item.span, hint=doc)
        return ty

    def _reduce(self, node: ast.Call) -> Ty:
        if node.kwargs:
            self._error(f"`{node.name}` takes no keyword arguments", node.kwargs[0].span)
        if not node.args:
            return self._error(f"`{node.name}()` of nothing", node.span)
        parts = []
        for arg in node.args:
            parts.append(self._comprehension(arg) if isinstance(arg, ast.Comprehension) else self.expr(arg))
        if any(p.kind == T.ERROR for p in parts):
            return ERR
        kinds = {p.kind for p in parts}
        if kinds <= {T.LOSS}:
            return merge(T.LOSS, *parts)
        if kinds <= {T.TENSOR} and node.name == "mean":
            return merge(T.TENSOR, *parts)
        if kinds <= {T.NUMBER, T.SCHEDULE}:
            return Ty(T.SCHEDULE)
        return self._error(f"`{node.name}` combines losses (or tensors, for `mean`); got "
                           + ", ".join(sorted(T.DESCRIPTIONS[k] for k in kinds)), node.span)

    def _comprehension(self, node: ast.Comprehension) -> Ty:
        iterable = self.expr(node.iterable)
        if iterable.kind == T.ERROR:
            return ERR
        if iterable.kind != T.LEVELS:
            return self._error(f"`for` iterates over granularity levels (`G.levels`), not {iterable.describe()}",
                               node.iterable.span)
        var = node.var.text
        if self.symbols.lookup(var, self._scope) is not None or var in BUILTINS:
            return self._error(f"the loop variable `{var}` hides a declared name", node.var.span,
                               hint="use a short name such as `l`")
        saved = dict(self._loop)
        self._loop[var] = Ty(T.LEVEL, iterable.components, granularity=iterable.granularity, level=None)
        try:
            return self.expr(node.body)
        finally:
            self._loop = saved

    def _combine(self, node: ast.Call) -> Ty:
        signature = COMBINATORS[node.name]
        calls.check_kwargs(node.kwargs, signature, f"`{node.name}`", node.func.span, self.problems)
        self._check_values(node.kwargs, "mix", node.name, skip=("weights",))
        if node.name == "mean":
            heads = [self.expr(a) for a in node.args]
            head_nodes = list(node.args)
        else:
            if len(node.args) != 1 or not isinstance(node.args[0], ast.ListExpr):
                return self._error("`mix` takes a list of heads and `weights=[...]`", node.span,
                                   hint="e.g. `mix([t_logits, mg.fine.logits], weights=[1, ramp])`")
            head_nodes = list(node.args[0].items)
            heads = [self.expr(a) for a in head_nodes]
            weights = node.kwarg("weights")
            if weights is not None:
                if not isinstance(weights.value, ast.ListExpr) or len(weights.value.items) != len(heads):
                    self._error(f"`weights=` needs one weight per head ({len(heads)})", weights.value.span)
                else:
                    for item in weights.value.items:
                        ty = self.expr(item)
                        if not ty.scalar and ty.kind != T.ERROR:
                            self._error(f"a mixing weight is a number or a schedule, not {ty.describe()}", item.span)
        if len(heads) < 1:
            return self._error(f"`{node.name}` needs at least one head", node.span)
        for head_node, ty in zip(head_nodes, heads):
            if ty.kind not in (T.TENSOR, T.ERROR):
                self._error(f"`{node.name}` mixes tensors (teacher heads), not {ty.describe()}", head_node.span)
        return merge(T.TENSOR, *heads)


def _model_defaults(full_name: str) -> dict | None:
    """A known model's keywords with their defaults; None for an unknown one (check_model reports it)."""
    try:
        return {**catalog.MODEL_KWARGS, **catalog.model_kwargs(full_name)}
    except (KeyError, ValueError):
        return None


_NOT_STATIC = object()  # a value only known at run time (a tensor, a loss)


def _shown(value, node) -> str:
    """A value as the recipe spells it, in an error message."""
    if value is _NOT_STATIC:
        return f"`{node.head.text}`" if isinstance(node, ast.Ref) else "a value known only at run time"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value) if isinstance(value, int) else f"{value:g}"
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "none"
    if isinstance(value, Schedule):
        return "a schedule"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(item, None) for item in value) + "]"
    return {ast.Arrow: "an `a -> b`"}.get(type(node), "a range")


def _tensor_hint(ty: Ty) -> str:
    if ty.kind == T.LEVEL:
        return "pick one of the level's outputs: `.logits` or `.code`"
    return "pass taps, granularity outputs or excitations"


def _hyper_kinds(default) -> tuple[str, ...]:
    """The kinds of value a loss hyperparameter accepts, judged by its default."""
    if isinstance(default, bool):
        return (T.BOOL,)
    if isinstance(default, (int, float)):
        return (T.NUMBER, T.SCHEDULE)
    if isinstance(default, str):
        return (T.STRING,)
    return (T.NUMBER, T.SCHEDULE, T.BOOL, T.STRING, T.LIST, T.NONE)


def _mentions_loss(node) -> bool:
    """Whether an argument computes a loss (so `mean(...)` averages losses, not teacher heads)."""
    if isinstance(node, ast.Comprehension):
        return True
    if isinstance(node, ast.Call):
        return node.name in catalog.loss_names() or any(_mentions_loss(a) for a in node.args)
    if isinstance(node, ast.BinOp):
        return _mentions_loss(node.left) or _mentions_loss(node.right)
    if isinstance(node, ast.Neg):
        return _mentions_loss(node.operand)
    return False


def level_names(symbols: Symbols, granularity: str) -> list[str]:
    """A granularity's level names, following `mirrors` (cycle-safe)."""
    node = evaluate.mirrored(symbols, granularity)
    return [level.name.text for level in node.levels] if node is not None else []


def resolve(symbols: Symbols, open_names: bool = False) -> tuple[Resolution, list[Diagnostic]]:
    """`open_names`: checking a fragment on its own, where names it does not declare are not errors."""
    resolver = Resolver(symbols, open_names)
    result = resolver.run()
    return result, resolver.problems
