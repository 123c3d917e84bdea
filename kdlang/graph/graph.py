"""RecipeGraph: declarations as networkx nodes; data-flow, "trained in" and "evaluated in" edges.

Edges point from what is read to what reads it (`flow`), from a stage to each thing it trains
(`trains`) and from a stage to each thing it evaluates without training it (`evaluates`). The flow
subgraph must be acyclic; everything should flow into some stage.
"""

from __future__ import annotations

import networkx as nx

from kdlang.graph.resolve import Resolution
from kdlang.graph.symbols import Symbols
from kdlang.syntax.loader import Program

FLOW, TRAINS, EVALUATES = "flow", "trains", "evaluates"


class RecipeGraph:
    def __init__(self, program: Program, symbols: Symbols, resolution: Resolution):
        self.program = program
        self.symbols = symbols
        self.resolution = resolution
        self.g = nx.DiGraph()
        self._flow = None
        for key, decl in symbols.decls.items():
            self.g.add_node(key, kind=decl.kind, decl=decl, span=decl.span)
        for key, refs in resolution.refs.items():
            for ref in refs:
                if ref in self.g and key in self.g:
                    self.g.add_edge(ref, key, kind=FLOW)
        for stage in symbols.stages:
            for component in self.trained_in(stage.name.text):
                self.g.add_edge(stage.name.text, component, kind=TRAINS)
            for component in self.evaluated_in(stage.name.text):
                if not self.g.has_edge(stage.name.text, component):  # trained there: a `trains` edge
                    self.g.add_edge(stage.name.text, component, kind=EVALUATES)

    # ---- queries used by passes, lowering and rendering ----------------------------------
    @property
    def stages(self) -> list[str]:
        return [s.name.text for s in self.symbols.stages if self.symbols.decls.get(s.name.text, None)
                and self.symbols.decls[s.name.text].node is s]

    def kind(self, key: str) -> str:
        return self.g.nodes[key]["kind"]

    def decl(self, key: str):
        return self.g.nodes[key]["decl"]

    def flow(self) -> nx.DiGraph:
        """The data-flow subgraph (built once: passes and lowering ask for it often)."""
        if self._flow is None:
            edges = [(u, v) for u, v, kind in self.g.edges(data="kind") if kind == FLOW]
            self._flow = nx.DiGraph(edges)
            self._flow.add_nodes_from(self.g.nodes)
        return self._flow

    def upstream(self, keys) -> set:
        """Everything the given declarations read, directly or not (one traversal for all)."""
        reverse = self.flow().reverse(copy=False)
        seen, todo = set(), [k for k in keys if k in reverse]
        while todo:
            for parent in reverse.successors(todo.pop()):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    def trained_in(self, stage: str) -> list[str]:
        ty = self.resolution.types.get(stage)
        return sorted(ty.components) if ty is not None else []

    def evaluated_in(self, stage: str) -> list[str]:
        """The components a stage's `evaluate` items name, in the order written, each once."""
        return list(dict.fromkeys(self.resolution.evaluated.get(stage, ())))

    def evaluation_only(self, stage: str) -> bool:
        """A stage that evaluates and trains nothing: no optimizer, no losses, no epochs."""
        return self.decl(stage).node.evaluation_only

    def stage_losses(self, stage: str) -> list[str]:
        """Keys of the losses a stage optimises: its own `loss` items, then those named by `losses`."""
        return [k for k in self._ordered_stage_refs(stage) if self.kind(k) == "loss"]

    def stage_excites(self, stage: str) -> list[str]:
        """Every excitation the stage computes: its own, and those its losses read, in data-flow order."""
        flow = self.flow()
        wanted = {k for k in self._ordered_stage_refs(stage) if self.kind(k) == "excite"}
        wanted |= {k for k in self.upstream(self.stage_losses(stage)) if self.kind(k) == "excite"}
        try:
            order = list(nx.lexicographical_topological_sort(flow.subgraph(wanted)))
        except nx.NetworkXUnfeasible:  # a cycle, reported by the cycles pass
            order = sorted(wanted)
        return order

    def _ordered_stage_refs(self, stage: str) -> list[str]:
        from kdlang.syntax import ast

        node = self.decl(stage).node
        keys = []
        for item in node.items:
            if isinstance(item, (ast.Loss, ast.Excite)):
                keys.append(f"{stage}.{item.name.text}")
            elif isinstance(item, ast.Losses):
                keys.extend(self.symbols.lookup(n.text).key for n in item.names if self.symbols.lookup(n.text))
        return [k for k in keys if k in self.g]

    def components(self, key: str) -> frozenset:
        ty = self.resolution.types.get(key)
        return ty.components if ty is not None else frozenset()

    def stage_data(self, stage: str) -> str:
        node = self.decl(stage).node
        arg = next((k for k in node.kwargs if k.name.text == "data"), None)
        return arg.value.head.text if arg is not None and hasattr(arg.value, "head") else "data"

    def stage_epochs(self, stage: str):
        node = self.decl(stage).node
        arg = next((k for k in node.kwargs if k.name.text == "epochs"), None)
        return getattr(arg.value, "value", None) if arg is not None else None
