"""The shape pass: build the lowering plan (models traced on `meta`, no data) and keep its diagnostics."""

from __future__ import annotations

from kdlang.graph.graph import RecipeGraph


def infer_shapes(graph: RecipeGraph) -> list:
    from kdlang.lower.plan import make_plan

    _, problems = make_plan(graph)
    return problems
