"""The canonical layout of a recipe: one spelling per meaning, every comment kept.

The formatter prints from the AST, so layout in the source is forgotten, and it places every comment
by comparing its span with the statements' spans. Two promises, checked by the tests:
`parse(format_text(x)) == parse(x)` and `format_text(format_text(x)) == format_text(x)`.

Layout rules:
- the version line, then the statements in source order, one per line (long lines are not wrapped);
- no blank line inside a run of statements of the same kind (`recipe` and `kdlang` count as one kind),
  one blank line between runs and around every block (`stage`, `granularity` with levels);
- 2-space indentation inside `{ }`; `=` aligned within a run (taps, models, losses, ...);
  the cells of `level` lines aligned in columns;
- a comment on its own line stays before the line that follows it, a comment at the end of a line
  stays there (two spaces away), a comment inside a statement that spans several lines moves before
  it, a comment at the end of a block or of the file stays there. Comments keep their order.
"""

from __future__ import annotations

import attrs

from kdlang.syntax import ast
from kdlang.syntax.parser import parse

INDENT = "  "
COMMENT_GAP = "  "


def format_text(text: str, file: str = "<string>") -> str:
    """Parse then format; raises `SyntaxProblem` when the text does not parse."""
    return format_recipe(parse(text, file))


def format_recipe(recipe: ast.Recipe) -> str:
    """The canonical text of a recipe, ending with exactly one newline."""
    entries = _entries(recipe)
    tail: list[str] = []
    _attach(sorted(recipe.comments, key=lambda c: _start(c.span)), entries, tail)
    lines = _render_runs(entries, indent="", blank_between_runs=True)
    if tail:
        lines += ([""] if lines else []) + tail
    return "\n".join(lines) + "\n"


# ---- expressions ---------------------------------------------------------------------------

# Binding strength of what an expression prints as; an operand weaker than its slot needs parentheses.
_EXPR, _SUM, _PRODUCT, _UNARY, _ATOM = range(5)
_BINARY = {"+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT}


def format_expr(node) -> str:
    """An expression (or comprehension, or `key=value`) in a slot that takes any expression: `->` and
    `..` included."""
    return _PRINTER.format(node)


class _Printer(ast.Visitor):
    """Prints expressions: each `visit` returns the text and how strongly it binds (`_EXPR`..`_ATOM`).

    Keeps no state, so one printer serves every caller. Joins use `map` rather than a comprehension,
    which keeps the Python frames per nesting level, and so the deepest recipe the parser accepts, low.
    """

    def format(self, node) -> str:
        """The text in a slot that takes any expression (nothing binds weaker than `_EXPR`)."""
        return self.visit(node)[0]

    def operand(self, node, slot: int) -> str:
        """The text in a slot of strength `slot`, in parentheses when the expression binds weaker."""
        text, strength = self.visit(node)
        return f"({text})" if strength < slot else text

    def arguments(self, args, kwargs) -> str:
        return "(" + ", ".join(map(self.format, (*args, *kwargs))) + ")"

    def visit_BinOp(self, node: ast.BinOp):
        strength = _BINARY[node.op]
        # Left-associative: a right operand of equal strength keeps its parentheses.
        return f"{self.operand(node.left, strength)} {node.op} {self.operand(node.right, strength + 1)}", strength

    def visit_Neg(self, node: ast.Neg):
        return "-" + self.operand(node.operand, _UNARY), _UNARY

    def visit_Arrow(self, node: ast.Arrow):
        return f"{self.operand(node.start, _SUM)} -> {self.operand(node.end, _SUM)}", _EXPR

    def visit_Range(self, node: ast.Range):
        return f"{self.operand(node.start, _SUM)}..{self.operand(node.end, _SUM)}", _EXPR

    def visit_Comprehension(self, node: ast.Comprehension):
        return f"for {node.var.text} in {self.format(node.iterable)}: {self.format(node.body)}", _EXPR

    def visit_KwArg(self, node: ast.KwArg):
        return f"{node.name.text}={self.format(node.value)}", _EXPR

    def visit_Num(self, node: ast.Num):
        return node.text, _ATOM

    def visit_Str(self, node: ast.Str):
        return quote(node.value), _ATOM

    def visit_Bool(self, node: ast.Bool):
        return ("true" if node.value else "false"), _ATOM

    def visit_NoneLit(self, node: ast.NoneLit):
        return "none", _ATOM

    def visit_ListExpr(self, node: ast.ListExpr):
        return "[" + ", ".join(map(self.format, node.items)) + "]", _ATOM

    def visit_Ref(self, node: ast.Ref):
        trail = (f".{t.text}" if isinstance(t, ast.Name) else f"[{self.format(t)}]" for t in node.trail)
        return node.head.text + "".join(trail), _ATOM

    def visit_Call(self, node: ast.Call):
        return self.format(node.func) + self.arguments(node.args, node.kwargs), _ATOM

    def generic_visit(self, node):
        raise TypeError(f"not an expression: {node!r}")


_PRINTER = _Printer()


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quote(value: str) -> str:
    """A string literal that reads back as `value` (the parser's escapes: \\" \\\\ \\n \\t)."""
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


# ---- statements ----------------------------------------------------------------------------


def _names(names) -> str:
    return ", ".join(n.text for n in names)


def _checkpoint(checkpoint: ast.Checkpoint | None) -> str:
    if checkpoint is None:
        return ""
    if checkpoint.stage is not None:
        return f" from stage {checkpoint.stage.text}"
    key = f" key={quote(checkpoint.key)}" if checkpoint.key is not None else ""
    return f" from {quote(checkpoint.path)}{key}"


def _declaration(node) -> tuple[str, str] | None:
    """(left, right) of a statement written `left = right`, so runs of them can align the `=`."""
    match node:
        case ast.Model(name=name, source=source, checkpoint=checkpoint, frozen=frozen):
            return f"model {name.text}", format_expr(source) + _checkpoint(checkpoint) + (" frozen" if frozen else "")
        case ast.Tap(name=name, model=model, layer=layer):
            return f"tap {name.text}", f"{model.text}.{layer.text}"
        case ast.Data(name=ast.Name(text=name), source=source):
            return f"data {name}", format_expr(source)
        case ast.Branch(name=name, tap=tap, source=source, checkpoint=checkpoint):
            return f"branch {name.text} on {tap.text}", format_expr(source) + _checkpoint(checkpoint)
        case ast.Schedule(name=name, value=value):
            return f"schedule {name.text}", format_expr(value)
        case ast.Excite(name=name, value=value):
            return f"excite {name.text}", format_expr(value)
        case ast.Loss(name=name, value=value):
            return f"loss {name.text}", format_expr(value)
    return None


def format_statement(node) -> str:
    """One statement (or stage item, level, version line) on one line; blocks give their header."""
    declaration = _declaration(node)
    if declaration is not None:
        return " = ".join(declaration)
    match node:
        case ast.Version(number=number, fragment=fragment):
            return f"kdlang {number}" + (" fragment" if fragment else "")
        case ast.Title(text=text):
            return f"recipe {quote(text)}"
        case ast.Use(path=path):
            return f"use {quote(path)}"
        case ast.Data(source=source):
            return f"data {format_expr(source)}"
        case ast.Granularity():
            return _granularity_header(node)
        case ast.Level():
            return " ".join(_level_cells(node))
        case ast.Stage(name=name, kwargs=kwargs):
            return f"stage {name.text}" + (_PRINTER.arguments((), kwargs) if kwargs else "")
        case ast.Train(names=names):
            return f"train {_names(names)}"
        case ast.Evaluate(names=names):
            return f"evaluate {_names(names)}"
        case ast.Losses(names=names):
            return f"losses {_names(names)}"
        case ast.Optimizer(call=call):
            return f"optimizer {format_expr(call)}"
        case ast.Lr(call=call):
            return f"lr {format_expr(call)}"
        case ast.Report():
            return _report(node)
        case ast.Runtime(kwargs=kwargs):
            return "runtime" + _PRINTER.arguments((), kwargs)
    raise TypeError(f"not a statement: {node!r}")


def _granularity_header(node: ast.Granularity) -> str:
    text = f"granularity {node.name.text} on {node.tap.text}"
    if node.mirrors is not None:
        text += f" mirrors {node.mirrors.text}"
    return text + _checkpoint(node.checkpoint)


def _level_cells(level: ast.Level) -> list[str]:
    return [f"level {level.name.text}"] + [format_expr(k) for k in level.kwargs]


def _report(report: ast.Report) -> str:
    text = f"report {_names(report.metrics)} on {report.split.text}"
    if report.select is not None:
        text += f", select {report.select.text} on {report.select_split.text}"
    if report.noise is not None:
        text += f", noise {format_expr(report.noise)}"
    return text


# ---- comments ------------------------------------------------------------------------------


@attrs.define(eq=False)
class _Entry:
    """One statement with the comments placed around it; blocks hold their items as entries."""

    node: object
    children: list = attrs.Factory(list)
    leading: list = attrs.Factory(list)  # own lines before the statement
    trailing: str | None = None  # after the statement's (last) line
    opener: str | None = None  # after a block's `{`
    closing: list = attrs.Factory(list)  # own lines before a block's `}`


def _entries(recipe: ast.Recipe) -> list[_Entry]:
    nodes = ([recipe.version] if recipe.version is not None else []) + list(recipe.statements)
    return [_Entry(node, [_Entry(child) for child in _children(node)]) for node in nodes]


def _children(node) -> tuple:
    if isinstance(node, ast.Stage):
        return node.items
    if isinstance(node, ast.Granularity):
        return node.levels
    return ()


def _is_container(node) -> bool:
    return isinstance(node, (ast.Stage, ast.Granularity))


def _start(span: ast.Span) -> tuple[int, int]:
    return span.line, span.col


def _end(span: ast.Span) -> tuple[int, int]:
    return span.end_line, span.end_col


def _attach(comments, entries: list[_Entry], tail: list[str]) -> None:
    """Give each comment (sorted by position) to exactly one entry, or to `tail` when none follows."""
    inside: dict[int, list] = {id(entry): [] for entry in entries}
    for comment in comments:
        at = _start(comment.span)
        host = next((e for e in entries if _start(e.node.span) <= at < _end(e.node.span)), None)
        if host is not None:
            inside[id(host)].append(comment)
            continue
        before = [e for e in entries if _end(e.node.span) <= at]
        after = next((e for e in entries if _start(e.node.span) > at), None)
        if before and before[-1].trailing is None and before[-1].node.span.end_line == comment.span.line:
            before[-1].trailing = comment.text
        elif after is not None:
            after.leading.append(comment.text)
        else:
            tail.append(comment.text)
    for entry in entries:
        if inside[id(entry)]:
            _attach_inside(entry, inside[id(entry)])


def _attach_inside(entry: _Entry, comments: list) -> None:
    """Comments within a statement's span: before it for a line, at their place for a block.

    In a block, a lone comment on the header's first line trails the `{`; comments spread over a
    multi-line header all move before the block, so their order is kept.
    """
    node = entry.node
    if not _is_container(node):
        entry.leading.extend(c.text for c in comments)
        return
    first = _start(entry.children[0].node.span) if entry.children else _end(node.span)
    header_end = _header_end_line(node)
    header, body = [], []
    for comment in comments:
        in_header = _start(comment.span) < first and comment.span.line <= header_end
        (header if in_header else body).append(comment)
    if len(header) == 1 and header[0].span.line == node.span.line:
        entry.opener = header[0].text
    else:
        entry.leading.extend(c.text for c in header)
    _attach(body, entry.children, entry.closing)


def _header_end_line(node) -> int:
    """The last line a block's header is known to reach (the `{` itself has no span)."""
    if isinstance(node, ast.Stage):
        parts = [node.name, *node.kwargs]
    else:
        parts = [node.name, node.tap, node.mirrors, node.checkpoint]
    return max(part.span.end_line for part in parts if part is not None)


# ---- layout --------------------------------------------------------------------------------


def _is_block(entry: _Entry) -> bool:
    node = entry.node
    return isinstance(node, ast.Stage) or (
        isinstance(node, ast.Granularity) and bool(entry.children or entry.closing)
    )


def _kind(entry: _Entry):
    """Entries of one kind form a run: no blank lines inside it, aligned `=`. Each block is alone."""
    if _is_block(entry):
        return entry
    if isinstance(entry.node, (ast.Version, ast.Title)):
        return "header"
    return type(entry.node)


def _runs(entries: list[_Entry]) -> list[list[_Entry]]:
    runs: list[list[_Entry]] = []
    for entry in entries:
        if runs and _kind(runs[-1][-1]) == _kind(entry):
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


def _render_runs(entries: list[_Entry], indent: str, blank_between_runs: bool) -> list[str]:
    lines: list[str] = []
    for run in _runs(entries):
        if lines and blank_between_runs:
            lines.append("")
        lines += _render_run(run, indent)
    return lines


def _render_run(run: list[_Entry], indent: str) -> list[str]:
    declarations = [_declaration(entry.node) for entry in run]
    width = max((len(d[0]) for d in declarations if d is not None), default=0)
    lines: list[str] = []
    for entry, declaration in zip(run, declarations):
        if _is_block(entry):
            lines += _render_block(entry, indent)
            continue
        _settle_opener(entry)
        lines += [indent + text for text in entry.leading]
        if declaration is not None:
            text = f"{declaration[0].ljust(width)} = {declaration[1]}"
        else:
            text = format_statement(entry.node)
        lines.append(_with_comment(indent + text, entry.trailing))
    return lines


def _settle_opener(entry: _Entry) -> None:
    """A granularity printed without braces has no `{` line: its opener comment trails the line."""
    if entry.opener is None:
        return
    if entry.trailing is None:
        entry.trailing = entry.opener
    else:
        entry.leading.append(entry.opener)
    entry.opener = None


def _render_block(entry: _Entry, indent: str) -> list[str]:
    header = indent + format_statement(entry.node)
    lines = [indent + text for text in entry.leading]
    if not (entry.children or entry.closing or entry.opener):
        return lines + [_with_comment(header + " {}", entry.trailing)]
    lines.append(_with_comment(header + " {", entry.opener))
    inner = indent + INDENT
    if isinstance(entry.node, ast.Granularity):
        lines += _render_levels(entry.children, inner)
    else:
        lines += _render_runs(entry.children, inner, blank_between_runs=False)
    lines += [inner + text for text in entry.closing]
    lines.append(_with_comment(indent + "}", entry.trailing))
    return lines


def _render_levels(entries: list[_Entry], indent: str) -> list[str]:
    """`level` lines with their cells (name, then each `key=value`) aligned in columns."""
    rows = [_level_cells(entry.node) for entry in entries]
    columns = max((len(row) for row in rows), default=0)
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(columns)]
    lines: list[str] = []
    for entry, row in zip(entries, rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + row[-1:]
        lines += [indent + text for text in entry.leading]
        lines.append(_with_comment(indent + " ".join(cells), entry.trailing))
    return lines


def _with_comment(line: str, comment: str | None) -> str:
    return f"{line}{COMMENT_GAP}{comment}" if comment else line
