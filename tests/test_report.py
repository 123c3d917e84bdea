"""Run reports as a user gets them: the page a run writes at its end, `kdlang report` over two runs,
a run that stopped early, and the page in a real browser (headless Chromium, where installed)."""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kdlang import durable
from kdlang.cli import main

TWO_STAGE = Path(__file__).parent / "recipes" / "two_stage.kd"
QUICK = ["--set", "stage.teach.epochs=1", "--set", "stage.distill.epochs=2"]
PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """What a reader sees of the page: its tables (cell texts), figures, images and links."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.captions: list[str] = []
        self.sources: list[str] = []   # every src= and href=
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.sources.append(attrs[key])
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "figcaption":
            self.captions.append("".join(self._caption or []))
            self._caption = None

    def handle_data(self, data):
        for part in (self._cell, self._caption):
            if part is not None:
                part.append(data)

    def table_with(self, first_header: str, column: str) -> list[list[str]]:
        return next(t for t in self.tables if t and t[0][:1] == [first_header] and column in t[0])


def summary_rows(run: Path) -> list[list[str]]:
    """The final table as `summary.md` has it (header first)."""
    lines = [line for line in (run / "summary.md").read_text().splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines if not line.startswith("|---")]


def no_external_references(text: str) -> list[str]:
    """Anything on the page that a browser would fetch from elsewhere."""
    page = Page(text)
    fetched = [s for s in page.sources if not s.startswith(("data:", "#"))]
    css = re.findall(r"url\((?!['\"]?(?:data:|#))[^)]*\)|@import[^;]*", text)
    return fetched + css


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs of one recipe under two seeds; the second one's own report failed."""
    root = tmp_path_factory.mktemp("reports")
    first, second = root / "seed0", root / "seed1"
    assert main(["compile", str(TWO_STAGE), "--run", *QUICK, "--out", str(first)]) == 0
    with pytest.MonkeyPatch.context() as patch:
        import kdlang.report

        def broken(folders, output):
            raise RuntimeError("no fonts")

        patch.setattr(kdlang.report, "write_report", broken)
        with contextlib.redirect_stderr(io.StringIO()) as err:
            assert main(["compile", str(TWO_STAGE), "--run", *QUICK, "--seed", "1", "--out", str(second)]) == 0
    return first, second, err.getvalue()


def test_a_run_writes_its_report_with_diagram_recipe_curves_table_and_environment(runs):
    run, _, _ = runs
    text = (run / "report.html").read_text()
    page = Page(text)
    assert "<svg" in text and "stage teach" in text  # the recipe diagram, inline
    # the operative recipe, highlighted: keywords marked up, and word for word the run's recipe.kd
    code = re.search(r'<div class="highlight"><pre>(.*?)</pre></div>', text, re.S).group(1)
    assert '<span class="k">stage</span>' in code
    assert html.unescape(re.sub(r"<[^>]+>", "", code)).strip() == (run / "recipe.kd").read_text().strip()
    # one panel per loss term and per head, per stage, as PNG files and inline the same bytes
    assert page.captions[0].startswith("Stage teach by epoch: loss: ce; teacher: top-1 (%)")
    assert page.captions[1].startswith("Stage distill by epoch: loss: ce; loss: kd; student: top-1 (%)")
    inline = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    files = [run / "report-teach.png", run / "report-distill.png"]
    assert [base64.b64decode(data) for data in inline] == [f.read_bytes() for f in files]
    assert all(f.read_bytes().startswith(PNG) for f in files)
    # the final table is the run's summary, number for number
    table = page.table_with("stage", "selected epoch")
    assert table == summary_rows(run)
    environment = {row[0]: row[1] for row in page.tables[-1] if len(row) == 2}
    meta = json.loads((run / "run.json").read_text())
    assert environment["torch"] == meta["torch"] and environment["seed"] == "0" and environment["device"] == "cpu"
    assert environment["command"] == f"kdlang compile {TWO_STAGE} --run --seed 0 {' '.join(QUICK)}"
    assert environment["epochs committed"] == "3" and environment["kdlang"] == meta["kdlang"]
    assert re.fullmatch(r"\d+\.\d s \(training and evaluation, summed over the epochs\)",
                        environment["wall time of the epochs"])
    assert no_external_references(text) == []


def test_a_failed_report_does_not_fail_the_run(runs):
    _, run, err = runs
    assert err == (f"kdlang: warning: report.html not written (RuntimeError: no fonts); "
                   f"retry with: kdlang report {run} -o {run / 'report.html'}\n")
    assert not (run / "report.html").exists()
    assert json.loads((run / "journal.json").read_text())["finished"]
    assert (run / "summary.md").exists() and (run / "student.pt").exists()


def test_two_runs_give_overlaid_curves_and_their_tables_side_by_side_with_differences(runs, tmp_path, capsys):
    first, second, _ = runs
    out = tmp_path / "compare.html"
    assert main(["report", str(first), str(second), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out} (2 plots beside it)"
    text = out.read_text()
    page = Page(text)
    assert (tmp_path / "compare-teach.png").read_bytes().startswith(PNG)
    assert all(c.endswith("one colour per run.") for c in page.captions[:2])
    compared = page.table_with("stage", "value")
    assert compared[0] == ["stage", "head", "value", "seed0", "seed1"]
    a, b = summary_rows(first), summary_rows(second)
    column = a[0].index("test top-1 (selected)")
    for row_a, row_b in zip(a[1:], b[1:]):
        line = next(r for r in compared if r[:3] == [row_a[0], row_a[1], "test top-1 (selected)"])
        delta = float(row_b[column]) - float(row_a[column])
        assert line[3:] == [row_a[column], f"{row_b[column]} ({delta:+.2f})"]
    assert text.count("<svg") == 2 and no_external_references(text) == []


def test_a_run_that_stopped_early_is_reported_with_what_it_committed(runs, tmp_path):
    """A run as Ctrl-C leaves it after distill's first epoch (tests/test_faults.py shows that this is
    what an interrupted run holds): a journal of two committed rows, a third row written after them
    but never committed, no summary, no report."""
    source, _, _ = runs
    run = tmp_path / "stopped"
    shutil.copytree(source, run)
    journal = json.loads((run / "journal.json").read_text())
    (run / "journal.json").write_text(json.dumps({**journal, "metrics_rows": 2, "finished": False}))
    for name in ("summary.md", "report.html", "report-teach.png", "report-distill.png"):
        (run / name).unlink()
    out = tmp_path / "stopped.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    text = out.read_text()
    assert "not finished: stopped after stage distill, epoch 1" in text
    last = Page(text).table_with("stage", "last committed epoch")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert last[1:] == [["teach", "teacher", "1", f"{rows[0]['val/teacher/top1']:.2f}", f"{rows[0]['test/teacher/top1']:.2f}"],
                        ["distill", "student", "1", f"{rows[1]['val/student/top1']:.2f}", f"{rows[1]['test/student/top1']:.2f}"]]
    environment = {row[0]: row[1] for row in Page(text).tables[-1] if len(row) == 2}
    assert environment["epochs committed"] == "2"  # the uncommitted third row is left out


def test_overwrite_removes_the_report(runs, tmp_path, monkeypatch):
    source, _, _ = runs
    run = tmp_path / "run"
    shutil.copytree(source, run)
    monkeypatch.setattr(durable, "at_boundary", _stop_at_first_metrics_row)
    assert main(["compile", str(TWO_STAGE), "--run", *QUICK, "--out", str(run), "--overwrite"]) == 130
    assert not (run / "report.html").exists() and list(run.glob("report-*.png")) == []


def _stop_at_first_metrics_row(point, path):
    if Path(path).name == "metrics.jsonl":
        raise KeyboardInterrupt


def test_report_refuses_what_is_not_a_run_in_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "is not a kdlang run directory" in err and err.count("\n") == 1
    assert main(["report", str(tmp_path / "absent"), "-o", str(tmp_path / "r.html")]) == 2
    assert "no such run directory" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_renders_in_headless_chromium(runs, tmp_path):
    import matplotlib.image

    run, _, _ = runs
    shot = tmp_path / "page.png"
    page = (run / "report.html").resolve().as_uri()
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    done = subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1200,1800", page],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)[..., :3]
    inked = (pixels.mean(axis=2) < 0.9).mean()  # share of pixels that are not (near) white
    assert pixels.shape[:2] == (1800, 1200) and 0.02 < inked < 0.6, inked


def test_a_head_trained_in_differently_named_stages_is_compared_by_name(runs, tmp_path):
    """Baseline vs +MAS: the student of an `alone` stage against the student of `distill`."""
    first, second, _ = runs
    alone = tmp_path / "alone"
    shutil.copytree(second, alone)
    for name in ("metrics.jsonl", "summary.md"):  # the second run, as if its distill stage were called alone
        text = (alone / name).read_text()
        (alone / name).write_text(text.replace('"stage": "distill"', '"stage": "alone"').replace("| distill |", "| alone |"))
    out = tmp_path / "baseline.html"
    assert main(["report", str(alone), str(first), "-o", str(out)]) == 0
    page = Page(out.read_text())
    assert page.captions[0].startswith("Heads across runs, each from the stage that trained it by epoch: "
                                       "student: top-1 (%)")
    assert (tmp_path / "baseline-heads-compared.png").read_bytes().startswith(PNG)
    compared = page.table_with("stage", "value")
    student = [row for row in compared if row[1] == "student"]
    assert [row[0] for row in student] == ["alone / distill"] * 3 and all("(" in row[4] for row in student[1:])
