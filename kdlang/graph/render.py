"""Draw a RecipeGraph with graphviz, so a reviewer sees who teaches whom before anything trains.

Left to right: data, then a teacher-side cluster and a student-side cluster, then schedules,
excitations and losses, each stage a cluster holding its own losses and its objective (Σ), from
which dashed "trains" edges go back to what the stage updates. A stage that evaluates components it
does not train holds an "evaluate" node, which dotted green "evaluates" edges reach from them (an
evaluation-only stage has no objective). Edge colour says whose signal flows into a loss: orange
from the teacher side, blue from what the stage is training.

The DOT text is built in declaration order with sorted edges, so one recipe always gives the same
bytes; `.dot`/`.gv` output never runs the graphviz executable.
"""

from __future__ import annotations

import html
from pathlib import Path

import graphviz

from kdlang.diagram import SUPPORTED, RenderError, check_suffix, picture_bytes  # noqa: F401 (re-exported)
from kdlang.graph.graph import FLOW, RecipeGraph
from kdlang.syntax import ast
from kdlang.syntax.formatter import format_expr

LABEL_WIDTH = 60
TEACHER, STUDENT = "teacher", "student"
SIDE_KINDS = ("model", "tap", "granularity", "branch")
TRAINABLE = ("model", "granularity", "branch")
FONT = "Helvetica"

# Orange is the teacher's colour, blue the student's, purple the stages'; grey means frozen.
TEACHER_EDGE, STUDENT_EDGE, NEUTRAL_EDGE, TRAINS_EDGE = "#d9822b", "#3d78c4", "#8c8c8c", "#8e44ad"
EVALUATES_EDGE = "#38761d"
SIDE_CLUSTER = {
    TEACHER: {"label": "teacher side", "fillcolor": "#fdf1e3", "color": "#e3b27a"},
    STUDENT: {"label": "student side", "fillcolor": "#eaf2fb", "color": "#8fb4de"},
}
STAGE_CLUSTER = {"fillcolor": "#f7f0fa", "color": TRAINS_EDGE}
KIND_STYLE = {
    "data": {"shape": "cylinder", "fillcolor": "#fff2cc"},
    "model": {"shape": "box3d", "fillcolor": "#9fc5e8"},
    "tap": {"shape": "ellipse", "fillcolor": "#ffffff"},
    "granularity": {"shape": "tab", "fillcolor": "#b6d7a8"},
    "branch": {"shape": "component", "fillcolor": "#a2c4c9"},
    "schedule": {"shape": "parallelogram", "fillcolor": "#e1d5e7"},
    "excite": {"shape": "hexagon", "fillcolor": "#ffe599"},
    "loss": {"shape": "box", "style": "rounded,filled", "fillcolor": "#f4cccc"},
}
TEACHER_MODEL_FILL = "#f9cb9c"
FROZEN_STYLE = {"style": "filled,dashed", "fillcolor": "#e3e3e3", "color": "#6b6b6b", "fontcolor": "#404040"}
OBJECTIVE_STYLE = {"shape": "circle", "label": "Σ", "fillcolor": "#f4cccc", "color": TRAINS_EDGE,
                   "width": "0.35", "fixedsize": "true", "fontsize": "14"}
EVALUATION_STYLE = {"shape": "note", "label": "evaluate", "fillcolor": "#d9ead3", "color": EVALUATES_EDGE,
                    "fontsize": "10"}

# ---- public API ------------------------------------------------------------------------------


def render_to(graph: RecipeGraph, path) -> None:
    """Write the recipe picture to `path`; the suffix picks the format."""
    path = Path(path)
    _write(path, render_bytes(graph, path.suffix.lower(), path.name))


def render_bytes(graph: RecipeGraph, suffix: str, name: str = "the picture") -> bytes:
    """The recipe picture in the format a file suffix names (`.svg`, `.png`, `.pdf`, `.dot`)."""
    check_suffix(suffix, name)
    return picture_bytes(to_dot(graph), suffix, name)


def to_dot(graph: RecipeGraph) -> str:
    """The recipe as DOT text: deterministic, and produced without any graphviz executable."""
    return _Drawing(graph).build().source


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # `-o figures/r.svg` into a folder not made yet
        path.write_bytes(data)
    except OSError as exc:
        raise RenderError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---- the drawing -----------------------------------------------------------------------------


class _Drawing:
    """Decides where each declaration goes and how it looks, then emits it into a Digraph."""

    def __init__(self, graph: RecipeGraph):
        self.graph = graph
        self.keys = list(graph.g.nodes)  # declaration order: stable for one recipe text
        self.order = {key: i for i, key in enumerate(self.keys)}
        self.stages = graph.stages
        self.trainers = _trainers(graph, self.stages)
        self.evaluators = _evaluators(graph, self.stages)
        self.loss_stages = _loss_stages(graph, self.stages)
        self.side = _sides(graph, self.keys, self.trainers, self.loss_stages, self.evaluators)
        # where each declaration is drawn, decided once: each cluster then takes its own members
        # (asking every key per stage made a recipe of 5,000 declarations take 12 s to draw)
        self.members: dict[str, list[str]] = {}
        for key in self.keys:
            place = self._placement(key)
            self.members.setdefault(f"stage {graph.decl(key).scope}" if place == "stage" else place, []).append(key)
        self.dot = graphviz.Digraph("recipe")

    def build(self) -> graphviz.Digraph:
        self._graph_attributes()
        for side in (TEACHER, STUDENT):
            self._side_cluster(side)
        for key in self.members.get("middle", []):
            self.dot.node(key, **self._node_attrs(key))
        for stage in self.stages:
            self._stage_cluster(stage)
        self._data_edges()
        self._flow_edges()
        self._objective_edges()
        self._trains_edges()
        self._evaluates_edges()
        return self.dot

    # ---- placement ----------------------------------------------------------------------
    def _placement(self, key: str) -> str:
        """`teacher`, `student`, `stage` (drawn inside its stage) or `middle`."""
        kind, decl = self.graph.kind(key), self.graph.decl(key)
        if kind == "stage":
            return "stage"
        if kind in SIDE_KINDS and self.side.get(key):
            return self.side[key]
        if decl.scope is not None and decl.scope in self.stages:
            return "stage"
        return "middle"

    def _graph_attributes(self) -> None:
        self.dot.attr(rankdir="LR", compound="true", newrank="true", nodesep="0.3", ranksep="0.55",
                      fontname=FONT, labelloc="t", label=self._title())
        self.dot.attr("node", fontname=FONT, fontsize="11", style="filled", penwidth="1.2")
        self.dot.attr("edge", fontname=FONT, fontsize="9", color=NEUTRAL_EDGE, arrowsize="0.7")

    def _title(self) -> str:
        title = self.graph.program.title or Path(self.graph.program.root.file).name
        legend = " · ".join([
            f'<FONT COLOR="{TEACHER_EDGE}">━ teacher signal</FONT>',
            f'<FONT COLOR="{STUDENT_EDGE}">━ from what the stage trains</FONT>',
            f'<FONT COLOR="{TRAINS_EDGE}">╌ stage trains</FONT>',
            '<FONT COLOR="#6b6b6b">grey dashed box: frozen</FONT>',
        ] + ([f'<FONT COLOR="{EVALUATES_EDGE}">┈ stage evaluates</FONT>'] if self.evaluators else []))
        return f'<<B>{_esc(title)}</B><BR/><FONT POINT-SIZE="10">{legend}</FONT>>'

    def _side_cluster(self, side: str) -> None:
        members = self.members.get(side, [])
        if not members:
            return
        with self.dot.subgraph(name=f"cluster_{side}") as sub:
            sub.attr(style="rounded,filled", fontsize="12", fontname=f"{FONT}-Bold", **SIDE_CLUSTER[side])
            for key in members:
                sub.node(key, **self._node_attrs(key))

    def _stage_cluster(self, stage: str) -> None:
        members = self.members.get(f"stage {stage}", [])
        with self.dot.subgraph(name=f"cluster_stage_{stage}") as sub:
            sub.attr(style="rounded,filled", label=self._stage_label(stage), fontsize="12",
                     fontname=f"{FONT}-Bold", **STAGE_CLUSTER)
            for key in members:
                sub.node(key, **self._node_attrs(key))
            if not self.graph.evaluation_only(stage):
                sub.node(_objective(stage), tooltip=f"total loss of stage {stage}", **OBJECTIVE_STYLE)
            if _evaluated_only(self.graph, stage):
                sub.node(_evaluation(stage), tooltip=f"what stage {stage} evaluates without training it",
                         **EVALUATION_STYLE)

    def _stage_label(self, stage: str) -> str:
        """Numbered in run order when there are several: dot places clusters to cut crossings."""
        label = _stage_label(self.graph, stage)
        return f"{self.stages.index(stage) + 1}. {label}" if len(self.stages) > 1 else label

    # ---- nodes --------------------------------------------------------------------------
    def _node_attrs(self, key: str) -> dict:
        kind, decl = self.graph.kind(key), self.graph.decl(key)
        attrs = dict(KIND_STYLE.get(kind, {"shape": "box"}))
        if kind == "model" and self.side.get(key) == TEACHER:
            attrs["fillcolor"] = TEACHER_MODEL_FILL
        if self._frozen(key):
            attrs.update(FROZEN_STYLE)
        detail = getattr(self, f"_{kind}_lines", None)
        lines = detail(decl.node) if detail is not None else []
        lines += self._training_note(key)
        attrs["label"] = _html_label(decl.name, lines)
        if kind in ("loss", "excite", "schedule"):
            attrs["tooltip"] = f"{kind} {decl.name} = {format_expr(decl.node.value)}"
        return attrs

    def _frozen(self, key: str) -> bool:
        """Frozen: marked so, or a trainable part no stage trains; a tap is frozen with its model."""
        kind, node = self.graph.kind(key), self.graph.decl(key).node
        if kind == "tap":
            model = self.graph.symbols.lookup(node.model.text)
            return model is not None and model.kind == "model" and self._frozen(model.key)
        if kind not in TRAINABLE:
            return False
        return bool(getattr(node, "frozen", False)) or not self.trainers.get(key)

    def _training_note(self, key: str) -> list[str]:
        kind, node = self.graph.kind(key), self.graph.decl(key).node
        if kind not in TRAINABLE:
            return []
        notes = []
        if getattr(node, "frozen", False):
            notes.append("frozen")
        elif self.trainers.get(key):
            notes.append("trained in " + ", ".join(self.trainers[key]))
        else:
            notes.append("never trained")
        if self.evaluators.get(key):
            notes.append("evaluated in " + ", ".join(self.evaluators[key]))
        checkpoint = getattr(node, "checkpoint", None)
        if checkpoint is not None:
            notes.append(_checkpoint(checkpoint))
        return [" · ".join(notes)]

    def _model_lines(self, node: ast.Model) -> list[str]:
        return [_truncate(format_expr(node.source))]

    def _tap_lines(self, node: ast.Tap) -> list[str]:
        return [f"{node.model.text}.{node.layer.text}"]

    def _granularity_lines(self, node: ast.Granularity) -> list[str]:
        header = f"on {node.tap.text}"
        levels = node.levels
        if node.mirrors is not None:
            header += f" · mirrors {node.mirrors.text}"
            other = self.graph.symbols.lookup(node.mirrors.text)
            levels = other.node.levels if other is not None and other.kind == "granularity" else ()
        return [header, *(_level_text(level) for level in levels)]

    def _branch_lines(self, node: ast.Branch) -> list[str]:
        return [f"on {node.tap.text}", _truncate(format_expr(node.source))]

    def _value_lines(self, node) -> list[str]:
        return [_truncate(format_expr(node.value))]

    _schedule_lines = _excite_lines = _loss_lines = _value_lines

    def _data_lines(self, node: ast.Data) -> list[str]:
        return [_truncate(format_expr(node.source))]

    # ---- edges --------------------------------------------------------------------------
    def _flow_edges(self) -> None:
        """Data flow between declarations; what flows into a stage is drawn by `_objective_edges`."""
        edges = [(u, v) for u, v, kind in self.graph.g.edges(data="kind") if kind == FLOW]
        for u, v in sorted(edges, key=lambda e: (self.order[e[0]], self.order[e[1]])):
            if "stage" in (self.graph.kind(u), self.graph.kind(v)):
                continue
            self.dot.edge(u, v, **self._flow_style(u, v))

    def _flow_style(self, u: str, v: str) -> dict:
        node = self.graph.decl(v).node
        if isinstance(node, ast.Granularity) and node.mirrors is not None and node.mirrors.text == u:
            return {"style": "dotted", "constraint": "false"}
        if self.graph.kind(v) not in ("loss", "excite"):
            return {}
        role = self._role(u, v)
        if role == TEACHER:
            return {"color": TEACHER_EDGE, "penwidth": "1.6"}
        if role == STUDENT:
            return {"color": STUDENT_EDGE, "penwidth": "1.6"}
        return {}

    def _role(self, u: str, v: str) -> str | None:
        """Whose signal `u` is for `v`: the student's if it reads what v's stage trains."""
        models = self.graph.components(u)
        if not models:
            return None
        stage = self._stage_of(v)
        if stage is not None:
            return STUDENT if models & set(self.graph.trained_in(stage)) else TEACHER
        sides = {self.side.get(c) for c in models}
        return TEACHER if sides == {TEACHER} else STUDENT if sides == {STUDENT} else None

    def _stage_of(self, key: str) -> str | None:
        """The stage a loss or excitation serves: its scope, the first stage optimising it, or
        failing both the stage of a loss or excitation that reads it directly."""
        own = self._own_stage(key)
        if own is not None:
            return own
        readers = sorted(self.graph.g.successors(key), key=self.order.get)
        return next((s for r in readers if (s := self._own_stage(r)) is not None), None)

    def _own_stage(self, key: str) -> str | None:
        scope = self.graph.decl(key).scope
        return scope if scope is not None else self.loss_stages.get(key, [None])[0]

    def _objective_edges(self) -> None:
        for stage in self.stages:
            for loss in self.graph.stage_losses(stage):
                self.dot.edge(loss, _objective(stage), color=TRAINS_EDGE)

    def _trains_edges(self) -> None:
        """Dashed stage -> component edges, written component -> stage with the arrow reversed.

        Written forwards, every one of them would run against the left-to-right flow and dot would
        route it around the whole picture; reversed, it is laid out like any data-flow edge.
        """
        for stage in self.stages:
            for component in self.graph.trained_in(stage):
                if component in self.graph.g:
                    self.dot.edge(component, _objective(stage), dir="back", style="dashed", label="trains",
                                  color=TRAINS_EDGE, fontcolor=TRAINS_EDGE, weight="0",
                                  lhead=f"cluster_stage_{stage}")

    def _evaluates_edges(self) -> None:
        """Dotted component -> "evaluate" node edges: the stage reads them, like data flow."""
        for stage in self.stages:
            for component in _evaluated_only(self.graph, stage):
                self.dot.edge(component, _evaluation(stage), style="dotted", label="evaluates",
                              color=EVALUATES_EDGE, fontcolor=EVALUATES_EDGE, lhead=f"cluster_stage_{stage}")

    def _data_edges(self) -> None:
        """Each stage's data feeds every model the stage runs."""
        drawn = []
        for stage in self.stages:
            data = self.graph.stage_data(stage)
            if data not in self.graph.g or self.graph.kind(data) != "data":
                continue
            for model in self._models_run(stage):
                if (data, model) not in drawn:
                    drawn.append((data, model))
                    self.dot.edge(data, model, color=NEUTRAL_EDGE)

    def _models_run(self, stage: str) -> list[str]:
        keys = self.graph.stage_losses(stage) + self.graph.stage_excites(stage) + self.graph.trained_in(stage) \
            + self.graph.evaluated_in(stage)
        models = {c for k in keys for c in self.graph.components(k) if c in self.graph.g
                  and self.graph.kind(c) == "model"}
        return sorted(models, key=self.order.get)



# ---- roles -----------------------------------------------------------------------------------


def _trainers(graph: RecipeGraph, stages: list[str]) -> dict[str, list[str]]:
    """Component key -> the stages that train it, in run order."""
    trainers: dict[str, list[str]] = {}
    for stage in stages:
        for component in graph.trained_in(stage):
            trainers.setdefault(component, []).append(stage)
    return trainers


def _evaluated_only(graph: RecipeGraph, stage: str) -> list[str]:
    """What a stage evaluates without training it (what it trains it evaluates anyway)."""
    trained = set(graph.trained_in(stage))
    return [c for c in graph.evaluated_in(stage) if c not in trained and c in graph.g]


def _evaluators(graph: RecipeGraph, stages: list[str]) -> dict[str, list[str]]:
    """Component key -> the stages that evaluate it without training it, in run order."""
    evaluators: dict[str, list[str]] = {}
    for stage in stages:
        for component in _evaluated_only(graph, stage):
            evaluators.setdefault(component, []).append(stage)
    return evaluators


def _loss_stages(graph: RecipeGraph, stages: list[str]) -> dict[str, list[str]]:
    """Loss key -> the stages that optimise it, in run order."""
    owners: dict[str, list[str]] = {}
    for stage in stages:
        for loss in graph.stage_losses(stage):
            owners.setdefault(loss, []).append(stage)
    return owners


def _sides(graph: RecipeGraph, keys: list[str], trainers: dict, loss_stages: dict,
           evaluators: dict | None = None) -> dict[str, str]:
    """Teacher or student side for models and what hangs off them.

    A model is a teacher if no stage trains it, or if some stage distils from it without training
    it (a teacher trained first in its own stage). A model that stages only evaluate (a student
    trained elsewhere, loaded to be measured) is on neither side. Taps, granularities and branches
    follow their model.
    """
    evaluators = evaluators or {}
    distilled_from = set()
    for loss, components in graph.resolution.teacher_inputs.items():
        for stage in loss_stages.get(loss, ()):
            distilled_from |= set(components) - set(graph.trained_in(stage))
    sides = {}
    for key in keys:
        if graph.kind(key) == "model":
            if key in distilled_from or not trainers.get(key):
                if key in distilled_from or not evaluators.get(key):
                    sides[key] = TEACHER
            else:
                sides[key] = STUDENT
    for key in keys:
        if graph.kind(key) in SIDE_KINDS[1:]:
            owners = {sides[c] for c in graph.components(key) if c in sides}
            if len(owners) == 1:
                sides[key] = owners.pop()
    return sides


# ---- text ------------------------------------------------------------------------------------


def _objective(stage: str) -> str:
    """The node id of a stage's objective; the space keeps it apart from any declaration key."""
    return f"stage {stage}"


def _evaluation(stage: str) -> str:
    """The node id of what a stage evaluates (a space, like `_objective`)."""
    return f"evaluate {stage}"


def _stage_label(graph: RecipeGraph, stage: str) -> str:
    """`stage distill · 240 epochs · sgd lr=0.05 · multistep`, `stage robust · evaluation only`."""
    node = graph.decl(stage).node
    parts = [f"stage {stage}"]
    epochs = graph.stage_epochs(stage)
    if graph.evaluation_only(stage):
        parts.append("evaluation only")
    elif epochs is not None:
        parts.append(f"{epochs:g} epoch" + ("" if epochs == 1 else "s"))
    data = next((k for k in node.kwargs if k.name.text == "data"), None)
    if data is not None:
        parts.append(f"on {format_expr(data.value)}")
    for optimizer in node.of(ast.Optimizer):
        lr = optimizer.call.kwarg("lr")
        parts.append(optimizer.call.name + (f" lr={format_expr(lr.value)}" if lr is not None else ""))
    parts.extend(lr.call.name for lr in node.of(ast.Lr))
    return " · ".join(parts)


def _checkpoint(checkpoint: ast.Checkpoint) -> str:
    if checkpoint.stage is not None:
        return f"from stage {checkpoint.stage.text}"
    return f"from {_truncate_path(checkpoint.path or '')}"


def _level_text(level: ast.Level) -> str:
    """`fine: code 64, T 2`."""
    values = ", ".join(f"{k.name.text} {format_expr(k.value)}" for k in level.kwargs)
    return f"{level.name.text}: {values}" if values else level.name.text


def _truncate(text: str, width: int = LABEL_WIDTH) -> str:
    """At most `width` characters, cut at a space or comma when one is near the end."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    boundary = max(cut.rfind(" "), cut.rfind(","))
    if boundary >= width * 3 // 4:
        cut = cut[:boundary]
    return cut.rstrip(" ,") + "…"


def _truncate_path(path: str, width: int = 40) -> str:
    """Long checkpoint paths keep their tail: the file name is what tells runs apart."""
    return path if len(path) <= width else "…" + path[-(width - 1):]


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _html_label(name: str, lines: list[str]) -> str:
    """Bold name over smaller detail lines, as a graphviz HTML-like label."""
    detail = "".join(f'<BR/><FONT POINT-SIZE="9">{_esc(line)}</FONT>' for line in lines if line)
    return f"<<B>{_esc(name)}</B>{detail}>"
