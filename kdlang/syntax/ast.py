"""The recipe AST: immutable attrs classes, each carrying the source span it came from.

Spans take no part in equality, so two parses of differently formatted text compare equal when
they mean the same recipe (the formatter's round-trip property relies on that).
"""

from __future__ import annotations

from typing import Union

import attrs

from kdlang.source import NOWHERE, Span  # noqa: F401 (the AST's positions)


def _span():
    return attrs.field(default=NOWHERE, eq=False, repr=False, kw_only=True)


# ---- expressions ---------------------------------------------------------------------------


@attrs.frozen
class Name:
    """An identifier, declared or referenced, with its own span for precise carets."""

    text: str
    span: Span = _span()


@attrs.frozen
class Num:
    value: Union[int, float]
    text: str  # as written, so `5e-4` prints back as `5e-4`
    span: Span = _span()


@attrs.frozen
class Str:
    value: str
    span: Span = _span()


@attrs.frozen
class Bool:
    value: bool
    span: Span = _span()


@attrs.frozen
class NoneLit:
    span: Span = _span()


@attrs.frozen
class ListExpr:
    items: tuple
    span: Span = _span()


@attrs.frozen
class Ref:
    """`a.b[c].d`: a head name followed by attribute names (Name) and index expressions."""

    head: Name
    trail: tuple = ()
    span: Span = _span()

    @property
    def dotted(self) -> str | None:
        """`a.b.c` when the reference has no index, else None."""
        if all(isinstance(t, Name) for t in self.trail):
            return ".".join([self.head.text, *(t.text for t in self.trail)])
        return None


@attrs.frozen
class KwArg:
    name: Name
    value: "Expr"
    span: Span = _span()


@attrs.frozen
class Comprehension:
    """`for l in mg.levels: expr`, only as a call argument (`sum(for ...)`, `mean(for ...)`)."""

    var: Name
    iterable: Ref
    body: "Expr"
    span: Span = _span()


@attrs.frozen
class Call:
    func: Ref
    args: tuple = ()  # expressions and comprehensions
    kwargs: tuple = ()  # KwArg
    span: Span = _span()

    @property
    def name(self) -> str:
        return self.func.dotted or self.func.head.text

    def kwarg(self, key: str):
        return next((k for k in self.kwargs if k.name.text == key), None)

    def list_items(self, key: str) -> tuple:
        """The items of keyword `key` when its value is a list (`augment=[crop(32), flip()]`), else ()."""
        kwarg = self.kwarg(key)
        return kwarg.value.items if kwarg is not None and isinstance(kwarg.value, ListExpr) else ()


@attrs.frozen
class BinOp:
    op: str  # + - * /
    left: "Expr"
    right: "Expr"
    span: Span = _span()


@attrs.frozen
class Neg:
    operand: "Expr"
    span: Span = _span()


@attrs.frozen
class Arrow:
    """`a -> b`: a value moving from a to b (schedules)."""

    start: "Expr"
    end: "Expr"
    span: Span = _span()


@attrs.frozen
class Range:
    """`a..b`: an interval of epochs."""

    start: "Expr"
    end: "Expr"
    span: Span = _span()


Expr = Union[Num, Str, Bool, NoneLit, ListExpr, Ref, Call, BinOp, Neg, Arrow, Range]


# ---- walking expressions -------------------------------------------------------------------
#
# One definition of what is inside an expression, for every pass that looks inside one.

_CHILDREN = {
    BinOp: lambda node: (node.left, node.right),
    Neg: lambda node: (node.operand,),
    Arrow: lambda node: (node.start, node.end),
    Range: lambda node: (node.start, node.end),
    ListExpr: lambda node: node.items,
    Call: lambda node: (*node.args, *node.kwargs),
    KwArg: lambda node: (node.value,),
    Comprehension: lambda node: (node.iterable, node.body),
    Ref: lambda node: tuple(item for item in node.trail if not isinstance(item, Name)),
}


def children(node) -> tuple:
    """The direct sub-expressions of an expression node, in source order; () for a leaf.

    - `BinOp`: left, right. `Neg`: the operand. `Arrow`, `Range`: start, end. `ListExpr`: the items.
    - `Call`: the positional arguments (expressions or `Comprehension`s), then the `KwArg` nodes;
      not `func`, which names a function rather than computing a value.
    - `KwArg`: its value. `Comprehension`: the iterable, then the body (`var` is a binding).
    - `Ref`: its index expressions (`a[i]`); attribute steps are `Name`s, not expressions.
    - `Num`, `Str`, `Bool`, `NoneLit`, `Name`, and anything that is not an expression: ().
    """
    get = _CHILDREN.get(type(node))
    return tuple(get(node)) if get is not None else ()


def walk(node):
    """`node` and every expression below it, depth-first, each before its children, in source order.

    Iterative, so any depth is fine; use it for passes that look at nodes one by one.
    """
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current)))


class Visitor:
    """A pass over expressions that does something per node class.

    `visit(node)` calls `self.visit_<ClassName>(node)` (`visit_BinOp`, `visit_Call`, `visit_KwArg`...)
    and returns what it returns; a class without its method goes to `generic_visit`, which visits
    the `children` and returns None. A `visit_X` that wants the default descent as well calls
    `self.generic_visit(node)`. Visiting recurses, one level per nesting level of the expression,
    which the parser bounds at `parser.MAX_DEPTH`; visitors that keep no state can be shared.
    """

    def visit(self, node):
        method = getattr(self, "visit_" + type(node).__name__, None)
        return method(node) if method is not None else self.generic_visit(node)

    def generic_visit(self, node) -> None:
        for child in children(node):
            self.visit(child)


# ---- statements ----------------------------------------------------------------------------


@attrs.frozen
class Version:
    number: int
    span: Span = _span()
    fragment: bool = False  # `kdlang 1 fragment`: a file for recipes to `use`, checked as a library


@attrs.frozen
class Title:
    text: str
    span: Span = _span()


@attrs.frozen
class Use:
    path: str
    span: Span = _span()


@attrs.frozen(repr=False)
class Checkpoint:
    """Where weights come from: a file, or the result of an earlier stage of this recipe.
    `key` (`from "x.pt" key="model.ema"`) is the dotted path of the state dict inside the file."""

    path: str | None = None
    stage: Name | None = None
    key: str | None = None
    span: Span = _span()

    def __repr__(self) -> str:
        # `key` only when given: a recipe without one keeps the meaning (and run identity) it had before
        key = f", key={self.key!r}" if self.key is not None else ""
        return f"Checkpoint(path={self.path!r}, stage={self.stage!r}{key})"


@attrs.frozen
class Data:
    name: Name | None  # None: the recipe's default data set, called `data`
    source: Call
    span: Span = _span()


@attrs.frozen
class Model:
    name: Name
    source: Call
    checkpoint: Checkpoint | None = None
    frozen: bool = False
    span: Span = _span()


@attrs.frozen
class Tap:
    name: Name
    model: Name
    layer: Name  # module path, possibly with `#k`, or `output`
    span: Span = _span()


@attrs.frozen
class Level:
    name: Name
    kwargs: tuple = ()
    span: Span = _span()


@attrs.frozen
class Granularity:
    name: Name
    tap: Name
    levels: tuple = ()
    mirrors: Name | None = None
    checkpoint: Checkpoint | None = None
    span: Span = _span()


@attrs.frozen
class Branch:
    name: Name
    tap: Name
    source: Call
    checkpoint: Checkpoint | None = None
    span: Span = _span()


@attrs.frozen
class Schedule:
    name: Name
    value: Expr
    span: Span = _span()


@attrs.frozen
class Excite:
    name: Name
    value: Expr
    span: Span = _span()


@attrs.frozen
class Loss:
    name: Name
    value: Expr
    span: Span = _span()


@attrs.frozen
class Train:
    names: tuple
    span: Span = _span()


@attrs.frozen
class Evaluate:
    """`evaluate a, b`: components whose class logits a stage measures without training them."""

    names: tuple
    span: Span = _span()


@attrs.frozen
class Optimizer:
    call: Call
    span: Span = _span()


@attrs.frozen
class Lr:
    call: Call
    span: Span = _span()


@attrs.frozen
class Losses:
    names: tuple
    span: Span = _span()


@attrs.frozen
class Stage:
    name: Name
    kwargs: tuple = ()
    items: tuple = ()
    span: Span = _span()

    def of(self, kind):
        return [item for item in self.items if isinstance(item, kind)]

    @property
    def evaluation_only(self) -> bool:
        """An evaluation stage: it evaluates something and trains nothing."""
        return bool(self.of(Evaluate)) and not self.of(Train)


@attrs.frozen
class Report:
    metrics: tuple  # Name
    split: Name
    select: Name | None = None  # best | last
    select_split: Name | None = None
    noise: ListExpr | None = None
    span: Span = _span()


@attrs.frozen
class Runtime:
    kwargs: tuple = ()
    span: Span = _span()


Statement = Union[
    Title, Use, Data, Model, Tap, Granularity, Branch, Schedule, Excite, Loss, Stage, Report, Runtime
]


@attrs.frozen
class Comment:
    text: str  # including the leading '#'
    span: Span = _span()


@attrs.frozen
class Recipe:
    """One parsed file: its statements in order and its comments (kept for the formatter)."""

    file: str
    version: Version | None = None
    statements: tuple = ()
    comments: tuple = attrs.field(default=(), eq=False)
    span: Span = _span()
