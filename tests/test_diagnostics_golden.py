"""Diagnostics of invalid recipes: each file in tests/invalid/ states the diagnostics it must produce.

An annotation is a comment inside the recipe:

    # expect: SEVERITY [FILE:]LINE:COL MESSAGE-SUBSTRING

FILE (relative to the recipe's folder) defaults to the recipe itself; it names a fragment when the
diagnostic is located in a `use`d file. Every error must be annotated; warnings are checked only
when annotated. Recipes are checked without the `shapes` pass (it builds and traces models), except
those with a `# check: shapes` line, whose diagnostics come from it. A few diagnostics are also
compared in full (message, excerpt, caret, notes, hint) with golden files in
tests/golden/diagnostics/; regenerate them with KDLANG_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import attrs
import pytest

from kdlang.check import check_path

TESTS = Path(__file__).parent
INVALID = TESTS / "invalid"
GOLDEN = TESTS / "golden" / "diagnostics"
CASES = sorted(INVALID.glob("*.kd"))
EXPECT = re.compile(r"#\s*expect:\s*(error|warning)\s+(?:(\S+):)?(\d+):(\d+)\s+(.+?)\s*$")

# Cases whose full formatted output is pinned: notes, did-you-mean hints, fragments, syntax errors.
GOLDEN_CASES = [
    "duplicate_declaration",
    "unknown_kwarg_loss",
    "wrong_kind",
    "use_cycle",
    "syntax_unclosed_brace",
    "syntax_missing_equals",
    "schedule_out_of_range",
    "report_select_val_without_val",
    "stage_evaluates_untrained",
]


@attrs.frozen
class Expectation:
    severity: str
    file: str
    line: int
    col: int
    text: str

    def matches(self, diagnostic) -> bool:
        span = diagnostic.span
        return (
            diagnostic.severity == self.severity
            and Path(span.file) == Path(self.file)
            and (span.line, span.col) == (self.line, self.col)
            and self.text in diagnostic.message
        )

    def __str__(self) -> str:
        return f"{self.severity} {self.file}:{self.line}:{self.col} {self.text}"


def expectations(path: Path) -> list[Expectation]:
    """The `# expect:` annotations of one recipe, positions relative to the recipe's folder."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = EXPECT.search(line)
        if match:
            severity, file, row, col, text = match.groups()
            found.append(Expectation(severity, file or path.name, int(row), int(col), text))
    return found


SHAPES = re.compile(r"^#\s*check:\s*shapes\s*$", re.M)


def checked(name: str):
    """Check a recipe of tests/invalid by its relative name, so spans and output are machine-independent."""
    wants_shapes = SHAPES.search(Path(name).read_text(encoding="utf-8"))
    return check_path(name, skip=() if wants_shapes else ("shapes",))


@pytest.fixture
def in_invalid(monkeypatch):
    monkeypatch.chdir(INVALID)


def describe(diagnostics, sources) -> str:
    return "\n".join(d.format(sources) for d in diagnostics) or "(no diagnostics)"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_invalid_recipe_produces_exactly_its_annotated_errors(path, in_invalid):
    expected = expectations(path)
    assert expected, f"{path.name} has no `# expect:` annotation"
    result = checked(path.name)

    missing = [e for e in expected if not any(e.matches(d) for d in result.diagnostics)]
    unexpected = [d for d in result.errors if not any(e.matches(d) for e in expected)]

    report = describe(result.diagnostics, result.sources)
    assert not missing, "expected but not reported:\n  " + "\n  ".join(map(str, missing)) + "\ngot:\n" + report
    assert not unexpected, "reported but not expected:\n" + describe(unexpected, result.sources)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_every_diagnostic_points_into_a_source_line(path, in_invalid):
    """Carets land on real text: the span's line exists and its column is inside it (or just past it)."""
    result = checked(path.name)
    for diagnostic in result.diagnostics:
        spans = [diagnostic.span, *(note.span for note in diagnostic.notes)]
        for span in spans:
            line = result.sources.line(span.file, span.line)
            assert line is not None, f"no source line for {span} in:\n{diagnostic.format(result.sources)}"
            assert 1 <= span.col <= len(line) + 1, f"column outside the line:\n{diagnostic.format(result.sources)}"
        assert "internal error" not in diagnostic.message, diagnostic.format(result.sources)


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_formatted_diagnostics_match_golden_file(name, in_invalid):
    result = checked(f"{name}.kd")
    text = result.format() + "\n"
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("KDLANG_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"missing {golden}; run with KDLANG_UPDATE_GOLDEN=1 to create it"
    assert text == golden.read_text(encoding="utf-8")


def test_annotation_parser_reads_severity_fragment_position_and_text(tmp_path):
    recipe = tmp_path / "r.kd"
    recipe.write_text(
        "# expect: error 3:5 unknown name `t_feet`\n"
        "#expect:warning fragments/a.kd:12:1 tap `x` is never used  \n"
        "# not an expectation: error 1:1 nothing\n",
        encoding="utf-8",
    )
    assert expectations(recipe) == [
        Expectation("error", "r.kd", 3, 5, "unknown name `t_feet`"),
        Expectation("warning", "fragments/a.kd", 12, 1, "tap `x` is never used"),
    ]


def test_every_validation_pass_and_syntax_slip_has_an_invalid_case():
    """The corpus keeps covering the passes: one file per area, found by its name prefix."""
    stems = {p.stem for p in CASES}
    areas = ["syntax_", "version_", "duplicate_", "unknown_", "wrong_kind", "cycle_", "use_", "unused_",
             "schedule_", "negative_weight", "nonpositive_temperature", "level_", "stage_", "from_stage",
             "report_", "runtime_", "loss_"]
    uncovered = [a for a in areas if not any(s.startswith(a) for s in stems)]
    assert not uncovered, f"no invalid recipe for: {uncovered}"
