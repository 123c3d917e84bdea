"""Text -> AST. lark does the parsing (`grammar.parse_tree`); this module builds attrs nodes with
spans and keeps comments. Errors are explained by `errors`, which is handed the parse function it
needs rather than importing this module."""

from __future__ import annotations

import re

import lark
from lark import Transformer, v_args

from kdlang.syntax import ast
from kdlang.syntax.ast import Span
from kdlang.syntax.errors import SyntaxProblem, explain, explain_glued
from kdlang.syntax.grammar import GluedKeyword, grammar_text, parse_tree  # noqa: F401 (tests read grammar_text here)

MAX_TEXT_CHARS = 1 << 20  # far above any real recipe: parsing and diagnostics stay cheap
MAX_DEPTH = 200  # nesting of one expression; keeps every recursive pass far from Python's limit
_STATEMENT_LEVELS = 3  # tree levels above an expression: start, stage, loss
_MAX_INT_DIGITS = 1000  # longer whole numbers are read as floats (Python refuses ints over 4300 digits)


def parse(text: str, file: str = "<string>") -> ast.Recipe:
    """Parse one file's text. Raises `kdlang.syntax.errors.SyntaxProblem` on malformed input."""
    if len(text) > MAX_TEXT_CHARS:
        raise SyntaxProblem(f"the recipe is {len(text)} characters long, over the {MAX_TEXT_CHARS} a recipe may have",
                            Span(file, 1, 1, 1, 2), hint="split it into fragments with `use`, or check that "
                            "this is the recipe you meant")
    try:
        tree, comments = parse_tree(text)
    except lark.exceptions.UnexpectedInput as exc:
        raise explain(exc, text, file, _example_tree) from None
    except GluedKeyword as glued:
        raise explain_glued(glued.token, text, file) from None
    _check_depth(tree, file)
    try:
        built = _Builder(file).transform(tree)
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, SyntaxProblem):
            raise exc.orig_exc from None
        raise
    return ast.Recipe(
        file=file,
        version=built.version,
        statements=built.statements,
        comments=tuple(ast.Comment(c.value.rstrip(), span=_token_span(file, c)) for c in comments),
        span=built.span,
    )


def _check_depth(tree, file: str) -> None:
    """Refuse, at its deepest point, an expression nested deeper than `MAX_DEPTH` (walked without
    recursion: building the AST and every later pass recurse once per level)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH + _STATEMENT_LEVELS:
            raise SyntaxProblem(f"expression nested too deeply (limit {MAX_DEPTH})", _meta_span(file, node.meta),
                                hint="split it into smaller declarations, or sum terms with `sum(...)`")
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, lark.Tree))


def _example_tree(text: str) -> lark.Tree:
    """The explainer's parse function for its labelled examples: this same parser (so parser states
    compare equal), with a glued keyword failing in the lexer like any stray character."""
    try:
        return parse_tree(text)[0]
    except GluedKeyword as glued:  # not a parser state worth learning from
        raise lark.exceptions.UnexpectedCharacters(text, glued.token.end_pos, glued.token.line,
                                                   glued.token.end_column) from None


def _token_span(file: str, tok: lark.Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


def _meta_span(file: str, meta) -> Span:
    if getattr(meta, "empty", True):
        return Span(file, 1, 1, 1, 1)
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


class _Built:
    def __init__(self, version, statements, span):
        self.version, self.statements, self.span = version, statements, span


@v_args(meta=True)
class _Builder(Transformer):
    """Maps each grammar rule to its AST node; rule names match the grammar one to one."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _span(self, meta) -> Span:
        return _meta_span(self.file, meta)

    # ---- top level -----------------------------------------------------------------------
    def start(self, meta, children):
        version = children[0] if children and isinstance(children[0], ast.Version) else None
        statements = tuple(c for c in children if not isinstance(c, ast.Version))
        return _Built(version, statements, self._span(meta))

    def version(self, meta, children):
        return ast.Version(int(children[0]), fragment=len(children) > 1, span=self._span(meta))

    def fragment_mark(self, meta, children):
        return True

    def title(self, meta, children):
        return ast.Title(_unquote(children[0]), span=self._span(meta))

    def use(self, meta, children):
        return ast.Use(_unquote(children[0]), span=self._span(meta))

    def data(self, meta, children):
        name = children[0] if len(children) == 2 else None
        return ast.Data(name, children[-1], span=self._span(meta))

    def model(self, meta, children):
        name, source, *rest = children
        checkpoint = next((c for c in rest if isinstance(c, ast.Checkpoint)), None)
        frozen = any(c == "frozen" for c in rest)
        return ast.Model(name, source, checkpoint, frozen, span=self._span(meta))

    def from_file(self, meta, children):
        key = children[1] if len(children) > 1 else None
        return ast.Checkpoint(path=_unquote(children[0]), key=key, span=self._span(meta))

    def checkpoint_key(self, meta, children):
        return _unquote(children[0])

    def from_stage(self, meta, children):
        return ast.Checkpoint(stage=children[0], span=self._span(meta))

    def frozen(self, meta, children):
        return "frozen"

    def tap(self, meta, children):
        name, ref = children
        model, _, layer = ref.value.partition(".")
        model_span = Span(self.file, ref.line, ref.column, ref.line, ref.column + len(model))
        layer_col = ref.column + len(model) + 1
        layer_span = Span(self.file, ref.line, layer_col, ref.end_line, ref.end_column)
        return ast.Tap(
            name,
            ast.Name(model, span=model_span),
            ast.Name(layer, span=layer_span),
            span=self._span(meta),
        )

    def granularity(self, meta, children):
        name, tap, *rest = children
        mirrors = next((c for c in rest if isinstance(c, _Mirrors)), None)
        checkpoint = next((c for c in rest if isinstance(c, ast.Checkpoint)), None)
        levels = next((c for c in rest if isinstance(c, tuple)), ())
        return ast.Granularity(
            name,
            tap,
            levels=levels,
            mirrors=mirrors.name if mirrors else None,
            checkpoint=checkpoint,
            span=self._span(meta),
        )

    def mirrors(self, meta, children):
        return _Mirrors(children[0])

    def levels(self, meta, children):
        return tuple(children)

    def level(self, meta, children):
        return ast.Level(children[0], tuple(children[1:]), span=self._span(meta))

    def branch(self, meta, children):
        name, tap, source, *rest = children
        return ast.Branch(name, tap, source, rest[0] if rest else None, span=self._span(meta))

    def schedule(self, meta, children):
        return ast.Schedule(children[0], children[1], span=self._span(meta))

    def excite(self, meta, children):
        return ast.Excite(children[0], children[1], span=self._span(meta))

    def loss(self, meta, children):
        return ast.Loss(children[0], children[1], span=self._span(meta))

    def stage(self, meta, children):
        name, *rest = children
        kwargs = rest.pop(0) if rest and isinstance(rest[0], _Arguments) else _Arguments((), ())
        if kwargs.args:
            raise _positional_stage_args(kwargs.args[0])
        return ast.Stage(name, kwargs.kwargs, tuple(rest), span=self._span(meta))

    def train(self, meta, children):
        return ast.Train(tuple(children), span=self._span(meta))

    def evaluate(self, meta, children):
        return ast.Evaluate(tuple(children), span=self._span(meta))

    def optimizer(self, meta, children):
        return ast.Optimizer(children[0], span=self._span(meta))

    def lr(self, meta, children):
        return ast.Lr(children[0], span=self._span(meta))

    def losses(self, meta, children):
        return ast.Losses(tuple(children), span=self._span(meta))

    def report(self, meta, children):
        for kind, what in ((_Select, "select"), (ast.ListExpr, "noise")):
            repeated = [c for c in children if isinstance(c, kind)][1:]
            if repeated:
                span = repeated[0].span if kind is ast.ListExpr else repeated[0].policy.span
                raise SyntaxProblem(f"`{what}` is given twice in the report", span, hint="keep one")
        names = [c for c in children if isinstance(c, ast.Name)]
        select = next((c for c in children if isinstance(c, _Select)), None)
        noise = next((c for c in children if isinstance(c, ast.ListExpr)), None)
        return ast.Report(
            metrics=tuple(names[:-1]),
            split=names[-1],
            select=select.policy if select else None,
            select_split=select.split if select else None,
            noise=noise,
            span=self._span(meta),
        )

    def select(self, meta, children):
        return _Select(children[0], children[1])

    def noise(self, meta, children):
        return children[0]

    def runtime(self, meta, children):
        arguments = children[0]
        if arguments.args:
            raise _positional_stage_args(arguments.args[0], what="runtime")
        return ast.Runtime(arguments.kwargs, span=self._span(meta))

    # ---- expressions ---------------------------------------------------------------------
    def arrow(self, meta, children):
        return ast.Arrow(children[0], children[1], span=self._span(meta))

    def range(self, meta, children):
        return ast.Range(children[0], children[1], span=self._span(meta))

    def _binop(op):  # noqa: N805 - a rule factory, not a method
        def rule(self, meta, children):
            return ast.BinOp(op, children[0], children[1], span=self._span(meta))

        return rule

    add, sub, mul, div = _binop("+"), _binop("-"), _binop("*"), _binop("/")

    def neg(self, meta, children):
        return ast.Neg(children[0], span=self._span(meta))

    def number(self, meta, children):
        text = str(children[0])
        value = int(text) if text.isdigit() and len(text) <= _MAX_INT_DIGITS else float(text)
        return ast.Num(value, text, span=self._span(meta))

    def string(self, meta, children):
        return ast.Str(_unquote(children[0]), span=self._span(meta))

    def true(self, meta, children):
        return ast.Bool(True, span=self._span(meta))

    def false(self, meta, children):
        return ast.Bool(False, span=self._span(meta))

    def none(self, meta, children):
        return ast.NoneLit(span=self._span(meta))

    def list(self, meta, children):
        return ast.ListExpr(tuple(children), span=self._span(meta))

    def ref(self, meta, children):
        return ast.Ref(children[0], tuple(children[1:]), span=self._span(meta))

    def attr(self, meta, children):
        return children[0]

    def index(self, meta, children):
        return children[0] if not isinstance(children[0], ast.Name) else _index_name(children[0])

    def call(self, meta, children):
        func, arguments = children
        return ast.Call(func, arguments.args, arguments.kwargs, span=self._span(meta))

    def arguments(self, meta, children):
        args = tuple(c for c in children if not isinstance(c, ast.KwArg))
        kwargs = tuple(c for c in children if isinstance(c, ast.KwArg))
        return _Arguments(args, kwargs)

    def kwarg(self, meta, children):
        return ast.KwArg(children[0], children[1], span=self._span(meta))

    def comprehension(self, meta, children):
        return ast.Comprehension(children[0], children[1], children[2], span=self._span(meta))

    def name(self, meta, children):
        return ast.Name(str(children[0]), span=_token_span(self.file, children[0]))


def _index_name(name: ast.Name) -> ast.Ref:
    """`smg[l]`: an index that is a bare name is a reference expression, not an attribute."""
    return ast.Ref(name, (), span=name.span)


class _Mirrors:
    def __init__(self, name):
        self.name = name


class _Select:
    def __init__(self, policy, split):
        self.policy, self.split = policy, split


class _Arguments:
    def __init__(self, args, kwargs):
        self.args, self.kwargs = args, kwargs


def _positional_stage_args(node, what="stage"):
    span = getattr(node, "span", None)
    return SyntaxProblem(
        f"{what} arguments must be named",
        span,
        hint="write them as key=value, e.g. `stage distill(epochs=240)`",
    )


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def _unquote(token) -> str:
    """The string's value: \\" \\\\ \\n \\t are escapes; any other backslash is kept as written
    (so Windows paths read naturally)."""
    return re.sub(r'\\(.)', lambda m: _ESCAPES.get(m.group(1), m.group(0)), str(token)[1:-1])
