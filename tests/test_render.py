"""Rendering recipes: golden DOT text, the picture's structure, output formats and their failures.

Regenerate the golden files with `KDLANG_UPDATE_GOLDEN=1 pytest tests/test_render.py`.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import graphviz
import networkx as nx
import pytest

from kdlang.check import check_path, check_text
from kdlang.cli import main
from kdlang import diagram
from kdlang.graph import render
from kdlang.graph.render import RenderError, render_to, to_dot

GOLDEN = Path(__file__).parent / "golden" / "render"
RECIPES = sorted(GOLDEN.glob("*.kd"))
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="the graphviz `dot` program is not installed")


@functools.cache
def _graph(name: str):
    checked = check_path(GOLDEN / f"{name}.kd", skip=("shapes",))
    assert not checked.errors, checked.format()
    return checked.graph


@functools.cache
def _dot(name: str) -> str:
    return to_dot(_graph(name))


def _id(key: str) -> str:
    """A node id as the graphviz package may write it: bare or quoted."""
    return f'(?:"{re.escape(key)}"|{re.escape(key)})'


def _node_line(dot: str, key: str) -> str:
    """The statement that declares node `key`."""
    match = re.search(rf"^\s*{_id(key)} \[.*$", dot, re.M)
    assert match, f"no node {key!r} in\n{dot}"
    return match.group(0)


def _edge_line(dot: str, tail: str, head: str) -> str:
    match = re.search(rf"^\s*{_id(tail)} -> {_id(head)}(?: \[.*)?$", dot, re.M)
    assert match, f"no edge {tail} -> {head}"
    return match.group(0)


def _cluster(dot: str, name: str) -> str:
    """The body of `subgraph name { ... }`, which the graphviz package indents by one tab."""
    start = dot.index(f"\tsubgraph {name} {{\n")
    return dot[start: dot.index("\n\t}\n", start)]


# ---- golden files ----------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_golden_dot(recipe: Path):
    golden = recipe.with_suffix(".dot")
    text = _dot(recipe.stem)
    if os.environ.get("KDLANG_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"missing {golden.name}: run with KDLANG_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


def test_there_are_golden_recipes():
    assert len(RECIPES) >= 2


def test_dot_ignores_networkx_edge_order():
    """Resolution fills sets, so edge insertion order may change between runs: output must not."""
    graph = check_path(GOLDEN / "mas_kd.kd", skip=("shapes",)).graph
    shuffled = nx.DiGraph()
    shuffled.add_nodes_from(graph.g.nodes(data=True))
    shuffled.add_edges_from(reversed(list(graph.g.edges(data=True))))
    graph.g = shuffled
    assert to_dot(graph) == _dot("mas_kd")


# ---- what the picture says -------------------------------------------------------------------


def test_sides_follow_training():
    dot = _dot("mas_kd")
    teacher, student = _cluster(dot, "cluster_teacher"), _cluster(dot, "cluster_student")
    for key in ("teacher", "t_feat", "t_logits", "mg"):
        assert _node_line(teacher, key)
    for key in ("student", "s_feat", "s_logits", "smg"):
        assert _node_line(student, key)
    assert 'label="teacher side"' in teacher and 'label="student side"' in student


def test_a_teacher_trained_first_stays_on_the_teacher_side():
    dot = _dot("quickstart")
    teacher = _node_line(_cluster(dot, "cluster_teacher"), "teacher")
    assert "trained in teach" in teacher
    assert "dashed" not in teacher  # trained, so not frozen
    assert _node_line(_cluster(dot, "cluster_student"), "student")


def test_frozen_parts_look_frozen():
    dot = _dot("mas_kd")
    for key in ("teacher", "t_feat", "t_logits"):
        line = _node_line(dot, key)
        assert 'style="filled,dashed"' in line and render.FROZEN_STYLE["fillcolor"] in line, line
    assert "frozen · from runs/teacher/best.pt" in _node_line(dot, "teacher")
    for key in ("student", "s_logits", "mg", "smg"):
        assert "dashed" not in _node_line(dot, key)


def test_stage_clusters_hold_their_losses_and_say_how_they_train():
    dot = _dot("mas_kd")
    distill = _cluster(dot, "cluster_stage_distill")
    assert 'label="2. stage distill · 240 epochs · sgd lr=0.05 · multistep"' in distill
    for key in ("distill.ce", "distill.kd", "distill.codes", "distill.target", "stage distill"):
        assert _node_line(distill, key)
    assert "distill.kd" not in _cluster(dot, "cluster_stage_analyze")
    probe = _cluster(_dot("fitnet_probe"), "cluster_stage_linear_probe")
    assert "stage linear_probe · 10 epochs · on probe · adam lr=0.001" in probe


def test_a_single_stage_is_not_numbered():
    one_stage = (GOLDEN / "quickstart.kd").read_text(encoding="utf-8").split("stage distill")[0]
    checked = check_text(one_stage, "one.kd", skip=("shapes",))
    assert 'label="stage teach · 30 epochs · sgd lr=0.1 · cosine"' in to_dot(checked.graph)


def test_a_shared_loss_sits_outside_the_stages_and_feeds_each():
    dot = _dot("fitnet_probe")
    assert "task [" not in _cluster(dot, "cluster_stage_hints")
    assert _edge_line(dot, "task", "stage hints") and _edge_line(dot, "task", "stage distill")


def test_loss_labels_show_weights_and_are_truncated():
    dot = _dot("mas_kd")
    codes = _node_line(dot, "distill.codes")
    detail = re.search(r'<FONT POINT-SIZE="9">([^<]*)</FONT>', codes).group(1)
    assert detail.startswith("ramp * sum(for l in mg.levels: kl(smg[l].code")
    assert detail.endswith("…") and len(detail) <= render.LABEL_WIDTH
    assert "tooltip=\"loss codes = ramp * sum(for l in mg.levels: kl(smg[l].code, l.code, T=l.T))\"" in codes
    assert "0.9 * kd(s_logits, t_logits, T=4)" in _node_line(_dot("quickstart"), "distill.kd")


def test_granularities_list_their_levels():
    dot = _dot("mas_kd")
    assert "fine: code 64, T 2" in _node_line(dot, "mg") and "coarse: code 256, T 8" in _node_line(dot, "mg")
    assert "mirrors mg" in _node_line(dot, "smg") and "fine: code 64, T 2" in _node_line(dot, "smg")


def test_edge_colours_say_whose_signal_it_is():
    dot = _dot("mas_kd")
    assert render.TEACHER_EDGE in _edge_line(dot, "t_logits", "distill.target")
    assert render.TEACHER_EDGE in _edge_line(dot, "mg", "distill.codes")
    assert render.STUDENT_EDGE in _edge_line(dot, "s_logits", "distill.kd")
    assert render.STUDENT_EDGE in _edge_line(dot, "smg", "distill.codes")
    assert render.STUDENT_EDGE in _edge_line(dot, "mg", "analyze.levels")  # analyze trains mg
    assert render.TEACHER_EDGE not in _edge_line(dot, "ramp", "distill.codes")


def test_trains_edges_are_dashed_and_point_at_the_component():
    dot = _dot("mas_kd")
    for stage, component in (("analyze", "mg"), ("distill", "student"), ("distill", "smg")):
        line = _edge_line(dot, component, f"stage {stage}")
        assert "style=dashed" in line and "dir=back" in line and f"lhead=cluster_stage_{stage}" in line
    assert "compound=true" in dot and "rankdir=LR" in dot


def test_evaluates_edges_are_dotted_and_reach_the_stage_evaluate_node():
    dot = _dot("robustness")
    for stage, component in (("distill", "teacher"), ("robust", "kd_student"), ("robust", "student"),
                             ("robust", "mg")):
        line = _edge_line(dot, component, f"evaluate {stage}")
        assert "style=dotted" in line and render.EVALUATES_EDGE in line and f"lhead=cluster_stage_{stage}" in line
    assert "stage evaluates" in dot.splitlines()[1]  # the legend says so, only when a stage evaluates
    assert "stage evaluates" not in _dot("mas_kd")
    assert "evaluated in robust" in _node_line(dot, "kd_student")


def test_an_evaluation_stage_has_no_objective_and_says_so():
    dot = _dot("robustness")
    robust = _cluster(dot, "cluster_stage_robust")
    assert 'label="2. stage robust · evaluation only"' in robust
    assert "Σ" not in robust and _node_line(robust, "evaluate robust")
    assert "Σ" in _cluster(dot, "cluster_stage_distill")


def test_a_model_only_evaluated_is_on_neither_side():
    dot = _dot("robustness")
    assert "kd_student" not in _cluster(dot, "cluster_teacher") + _cluster(dot, "cluster_student")
    assert _node_line(_cluster(dot, "cluster_teacher"), "teacher")  # evaluated, but distilled from
    assert _node_line(_cluster(dot, "cluster_student"), "student")


def test_data_feeds_the_models_its_stages_run():
    dot = _dot("fitnet_probe")
    assert _edge_line(dot, "data", "teacher") and _edge_line(dot, "data", "student")
    assert _edge_line(dot, "probe", "student")
    assert not re.search(r"^\s*probe -> teacher", dot, re.M)


def test_a_broken_recipe_still_renders():
    text = """kdlang 1
data cifar10(batch=64)
model node = zoo.resnet8(classes=10)
tap graph = node.output
tap t = ghost.output
granularity g on graph mirrors nope
excite a = mean(graph, b)
excite b = mean(graph, a)
loss l = kd(graph, t) + kd(graph, a)
stage s(epochs=2, data=zzz) { train graph, node, missing  losses l, nothing }
"""
    checked = check_text(text, "broken.kd", skip=("shapes",))
    assert checked.errors
    dot = to_dot(checked.graph)
    assert '"node" [' in dot and '"graph" [' in dot  # DOT keywords are quoted as ids
    graphviz.Source(dot)  # well-formed enough for the package


def test_truncate_cuts_at_a_boundary():
    assert render._truncate("short") == "short"
    cut = render._truncate("kd(s_logits, t_logits, T=4) + kd(s_feat, t_feat, T=4) + kd(more, things)")
    assert cut.endswith("…") and len(cut) <= render.LABEL_WIDTH and not cut.endswith(" …")


# ---- output formats --------------------------------------------------------------------------


@needs_dot
def test_svg_is_rendered_without_stray_files(tmp_path):
    out = tmp_path / "recipe.svg"
    render_to(_graph("mas_kd"), out)
    text = out.read_text(encoding="utf-8")
    assert text.lstrip().startswith(("<?xml", "<svg"))
    assert "stage analyze" in text and "stage distill" in text
    assert [p.name for p in tmp_path.iterdir()] == ["recipe.svg"]


@pytest.mark.parametrize("suffix", [".dot", ".gv"])
def test_dot_text_needs_no_executable(tmp_path, monkeypatch, suffix):
    def no_process(*args, **kwargs):
        raise AssertionError("rendering DOT text must not start a process")

    monkeypatch.setitem(os.environ, "PATH", "")
    monkeypatch.setattr(subprocess, "Popen", no_process)
    monkeypatch.setattr(subprocess, "run", no_process)
    out = tmp_path / f"recipe{suffix}"
    render_to(_graph("quickstart"), out)
    assert out.read_text(encoding="utf-8") == _dot("quickstart")


def test_missing_dot_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(os.environ, "PATH", "")
    with pytest.raises(RenderError) as info:
        render_to(_graph("quickstart"), tmp_path / "q.png")
    message = str(info.value)
    assert "apt-get install -y graphviz" in message and ".dot" in message
    assert not (tmp_path / "q.png").exists()


def test_executable_not_found_becomes_render_error(tmp_path, monkeypatch):
    def not_found(self, *args, **kwargs):
        raise graphviz.ExecutableNotFound(("dot",))

    monkeypatch.setattr(diagram.shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(graphviz.Source, "pipe", not_found)
    with pytest.raises(RenderError, match="apt-get install -y graphviz"):
        render_to(_graph("quickstart"), tmp_path / "q.pdf")


@pytest.mark.parametrize("name", ["q.jpg", "q", "q.SVGZ"])
def test_unknown_suffix_names_the_supported_formats(tmp_path, name):
    with pytest.raises(RenderError) as info:
        render_to(_graph("quickstart"), tmp_path / name)
    for suffix in (".svg", ".png", ".pdf", ".dot"):
        assert suffix in str(info.value)


def test_unwritable_output_is_a_render_error(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RenderError, match="cannot write"):
        render_to(_graph("quickstart"), tmp_path / "a-file" / "q.dot")


def test_a_folder_not_made_yet_is_made(tmp_path):
    render_to(_graph("quickstart"), tmp_path / "figures" / "q.dot")
    assert (tmp_path / "figures" / "q.dot").read_text().startswith("digraph")


# ---- the command line ------------------------------------------------------------------------


@needs_dot
def test_cli_renders_svg(tmp_path, capsys):
    out = tmp_path / "out.svg"
    assert main(["render", str(GOLDEN / "quickstart.kd"), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").lstrip().startswith(("<?xml", "<svg"))
    assert f"wrote {out}" in capsys.readouterr().out


def test_cli_reports_missing_dot_as_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(os.environ, "PATH", "")
    assert main(["render", str(GOLDEN / "quickstart.kd"), "-o", str(tmp_path / "out.svg")]) == 2
    assert "apt-get install -y graphviz" in capsys.readouterr().err
