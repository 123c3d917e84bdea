"""The architecture holds: layers import downwards only, nothing past the front end reads the AST,
the library is the bottom of the domain code, and no module takes part in an import cycle.

The contracts live in pyproject.toml (`[tool.importlinter]`) and docs/architecture.md draws them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx
import pytest

ROOT = Path(__file__).parent.parent


def _lint_imports() -> list[str]:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "importlinter.cli"]


def test_the_import_contracts_hold():
    done = subprocess.run([*_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.fixture(scope="module")
def imports() -> nx.DiGraph:
    """kdlang's modules and what each imports (function-level imports included), without the
    root package, whose lazy facade (`kdlang.load`) reaches everything by design."""
    graph = grimp.build_graph("kdlang", cache_dir=None)
    edges = nx.DiGraph()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if "kdlang" not in (module, imported):
                edges.add_edge(module, imported)
    return edges


def test_no_module_takes_part_in_an_import_cycle(imports):
    cycles = list(nx.simple_cycles(imports, length_bound=8))
    assert not cycles, [" -> ".join(cycle) for cycle in cycles[:5]]


@pytest.mark.parametrize("layer, forbidden", [
    ("kdlang.runtime", ("kdlang.syntax", "kdlang.graph", "kdlang.check", "kdlang.ir.build")),
    ("kdlang.lower", ("kdlang.syntax", "kdlang.graph", "kdlang.check", "kdlang.ir.build")),
    ("kdlang.library", ("kdlang.syntax", "kdlang.graph", "kdlang.lower", "kdlang.runtime", "kdlang.ir",
                        "kdlang.diagnostics", "kdlang.check")),
])
def test_a_layer_does_not_reach_what_it_must_not_read(imports, layer, forbidden):
    """Directly or through any chain of imports."""
    sources = [m for m in imports if m == layer or m.startswith(layer + ".")]
    reached = set().union(*(nx.descendants(imports, m) for m in sources))
    bad = sorted(m for m in reached if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not bad, bad
