"""The first pass: every declaration gets a unique key; duplicates are diagnosed.

Top-level declarations share one namespace. Losses and excitations declared inside a stage live in
that stage's scope (key `stage.name`), so two stages may each have a `loss ce`.
"""

from __future__ import annotations

import attrs

from kdlang.diagnostics import Diagnostic, Note, error
from kdlang.syntax import ast

KINDS = {
    ast.Data: "data",
    ast.Model: "model",
    ast.Tap: "tap",
    ast.Granularity: "granularity",
    ast.Branch: "branch",
    ast.Schedule: "schedule",
    ast.Excite: "excite",
    ast.Loss: "loss",
    ast.Stage: "stage",
}
BUILTINS = {"label": "labels", "index": "index"}
DEFAULT_DATA = "data"

# How messages name each kind of declaration: (with an article, plural); the rest are regular.
_KIND_WORDS = {
    "data": ("a data set", "data sets"),
    "excite": ("an excitation", "excitations"),
    "granularity": ("a granularity", "granularities"),
    "branch": ("a branch", "branches"),
}


def a_kind(kind: str) -> str:
    """`a model`, `a data set`, `an excitation`."""
    return _KIND_WORDS.get(kind, (f"a {kind}",))[0]


def kinds(kind: str) -> str:
    """`models`, `data sets`, `granularities`."""
    return _KIND_WORDS.get(kind, (None, f"{kind}s"))[1]


@attrs.frozen
class Decl:
    kind: str
    name: str
    node: object
    scope: str | None = None  # the stage a local loss/excite belongs to

    @property
    def key(self) -> str:
        return f"{self.scope}.{self.name}" if self.scope else self.name

    @property
    def span(self):
        name = getattr(self.node, "name", None)
        return name.span if isinstance(name, ast.Name) else self.node.span


@attrs.define
class Symbols:
    """Declarations by key, plus the statements that declare nothing (title, report, runtime)."""

    decls: dict = attrs.field(factory=dict)
    stages: list = attrs.field(factory=list)  # in run order
    reports: list = attrs.field(factory=list)
    runtimes: list = attrs.field(factory=list)

    def lookup(self, name: str, scope: str | None = None) -> Decl | None:
        if scope and f"{scope}.{name}" in self.decls:
            return self.decls[f"{scope}.{name}"]
        return self.decls.get(name)

    def of_kind(self, kind: str) -> list[Decl]:
        return [d for d in self.decls.values() if d.kind == kind]


def declare(statements) -> tuple[Symbols, list[Diagnostic]]:
    symbols, problems = Symbols(), []

    def add(decl: Decl):
        clash = symbols.decls.get(decl.key)
        if decl.name in BUILTINS:
            problems.append(error(f"`{decl.name}` is a built-in name (the batch's {BUILTINS[decl.name]})",
                                  decl.span, hint="choose another name"))
            return
        if clash is not None:
            problems.append(
                error(f"`{decl.name}` is already declared (as {a_kind(clash.kind)})", decl.span,
                      notes=[Note("first declared here", clash.span)], hint="names must be unique")
            )
            return
        symbols.decls[decl.key] = decl

    for statement in statements:
        kind = KINDS.get(type(statement))
        if kind == "data":
            name = statement.name.text if statement.name else DEFAULT_DATA
            add(Decl(kind, name, statement))
        elif kind == "stage":
            add(Decl(kind, statement.name.text, statement))
            symbols.stages.append(statement)
            for item in statement.items:
                if isinstance(item, (ast.Loss, ast.Excite)):
                    add(Decl(KINDS[type(item)], item.name.text, item, scope=statement.name.text))
        elif kind is not None:
            add(Decl(kind, statement.name.text, statement))
        elif isinstance(statement, ast.Report):
            symbols.reports.append(statement)
        elif isinstance(statement, ast.Runtime):
            symbols.runtimes.append(statement)
    for key, local in list(symbols.decls.items()):
        other = symbols.decls.get(local.name) if local.scope else None
        if other is not None and other.kind != "stage":
            problems.append(error(
                f"`{local.name}` in stage `{local.scope}` hides {a_kind(other.kind)} declared at top level",
                local.span, notes=[Note("declared here", other.span)], hint="rename one of them"))
            del symbols.decls[key]
    for extra in symbols.reports[1:]:
        problems.append(error("a recipe has one `report`", extra.span,
                              notes=[Note("the first report is here", symbols.reports[0].span)],
                              hint="merge them: `report top1, top5 on test, select best on val`"))
    for extra in symbols.runtimes[1:]:
        problems.append(error("a recipe has one `runtime`", extra.span,
                              notes=[Note("the first runtime is here", symbols.runtimes[0].span)],
                              hint="merge their arguments into one `runtime(...)`"))
    return symbols, problems
