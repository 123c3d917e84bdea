"""The documentation is tested: its examples check, its error examples print what they say, its
tested commands and Python examples run, its library tables match the registries, the tutorial runs
step by step, and the site builds with `mkdocs build --strict`.

Every page of docs/ is covered (docs/methods.md by tests/test_methods_doc.py, with its own markers).
Conventions (see the top of docs/language.md):

- ```kd        a complete recipe; `kdlang check` must report nothing (no error, no warning).
- ```kd-error  a recipe with a mistake; the ```text block right after it is the exact output
  ```kd-warning of the checker (`Checked.format()`), errors resp. warnings only.
- <!-- file: NAME --> before a ```kd block: the block is a fragment stored as NAME for the `use`
  lines of later blocks of the same document; it is checked through the recipes that use it.
- <!-- fragment --> before a ```kd block: a fragment that cannot be shape-checked; it is checked
  with skip=("shapes",).
- <!-- snippet --> before a ```kd block: a deliberate excerpt (a few statements out of a recipe);
  it must parse, nothing more.
- <!-- quote: PATH --> before a ```kd block: the whole of the recipe file PATH (from the repository
  root); the block must equal the file, which must check clean.
- A line of a ```sh block that ends with `# tested` is a kdlang command; it must exit 0. It runs
  in-process (`kdlang.cli.main`) from the repository root, so it costs no extra torch import. In
  docs/tutorial.md the tested lines are steps: they run in order, in a scratch folder holding a
  copy of docs/tutorial/.
- <!-- output of: COMMAND --> before a ```text block: the block is an excerpt of what the kdlang
  COMMAND prints; its lines must appear in that output in the same order (`...` skips lines).
- <!-- tested --> before a ```python block: the block runs from the repository root and must not
  raise.

Every recipe block is checked under the file name `example.kd`; every `kd` block of every page must
lex without an error token (the site highlights it with kdlang's Pygments lexer).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from kdlang.check import check_path, check_text
from markdown_blocks import fenced_blocks

ROOT = Path(__file__).resolve().parent.parent
DEDICATED = {"methods.md": "tests/test_methods_doc.py"}  # pages whose blocks another test checks
DOCS = tuple(p for p in sorted((ROOT / "docs").glob("*.md")) if p.name not in DEDICATED)
TUTORIAL = "tutorial.md"  # its tested commands are steps, run in order in a scratch folder
EXAMPLE = "example.kd"
TESTED = "# tested"

_MARKER = re.compile(r"^<!--\s*(file:\s*(?P<file>\S+)|(?P<fragment>fragment)|(?P<snippet>snippet)|(?P<tested>tested)"
                     r"|quote:\s*(?P<quote>\S+)|output of:\s*(?P<output>.+?))\s*-->\s*$")


@attrs.frozen
class Block:
    doc: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    file: str | None = None  # <!-- file: NAME -->
    fragment: bool = False  # <!-- fragment -->
    output_of: str | None = None  # <!-- output of: COMMAND -->
    snippet: bool = False  # <!-- snippet -->
    quote: str | None = None  # <!-- quote: PATH -->
    tested: bool = False  # <!-- tested -->

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the marker comment on the line before it."""
    found = []
    for line, lang, text, previous in fenced_blocks(path.read_text(encoding="utf-8"), path.name):
        marker = _MARKER.match(previous)
        found.append(Block(path.name, line, lang, text,
                           file=marker.group("file") if marker else None,
                           fragment=bool(marker and marker.group("fragment")),
                           output_of=marker.group("output") if marker else None,
                           snippet=bool(marker and marker.group("snippet")),
                           quote=marker.group("quote") if marker else None,
                           tested=bool(marker and marker.group("tested"))))
    return found


ALL = {path.name: blocks(path) for path in DOCS if path.exists()}


def _recipes():
    return [b for bs in ALL.values() for b in bs if b.lang == "kd" and b.file is None and not b.snippet]


def _failures():
    return [b for bs in ALL.values() for b in bs if b.lang in ("kd-error", "kd-warning")]


def _fragments(doc: str) -> dict:
    return {b.file: b.text for b in ALL.get(doc, ()) if b.lang == "kd" and b.file}


def _check(block: Block):
    skip = ("shapes",) if block.fragment else ()
    if block.quote:
        quoted = ROOT / block.quote
        assert quoted.is_file(), f"{block.where}: quotes {block.quote}, which does not exist"
        assert block.text == quoted.read_text(encoding="utf-8"), \
            f"{block.where}: the block is not {block.quote} any more; paste the file into it"
        return check_path(quoted, skip=skip)
    fragments = _fragments(block.doc)
    if fragments and re.search(r"^\s*use\s", block.text, re.M):
        return check_path(EXAMPLE, texts={**fragments, EXAMPLE: block.text}, skip=skip)
    return check_text(block.text, EXAMPLE, skip=skip)


def _expected(block: Block) -> str:
    bs = ALL[block.doc]
    after = bs[bs.index(block) + 1] if bs.index(block) + 1 < len(bs) else None
    assert after is not None and after.lang == "text", \
        f"{block.where}: a ```{block.lang} block must be followed by a ```text block with its diagnostics"
    return after.text


@pytest.mark.parametrize("block", _recipes(), ids=lambda b: b.where)
def test_example_checks_clean(block):
    checked = _check(block)
    if checked.diagnostics:
        pytest.fail(f"{block.where}: the example is not clean:\n{checked.format()}", pytrace=False)


@pytest.mark.parametrize("block", _failures(), ids=lambda b: b.where)
def test_diagnostic_example_prints_what_the_docs_say(block):
    checked = _check(block)
    if block.lang == "kd-error":
        assert checked.errors, f"{block.where}: a kd-error example without errors"
    else:
        assert checked.diagnostics and not checked.errors, \
            f"{block.where}: a kd-warning example must give warnings and no errors:\n{checked.format()}"
    actual = checked.format().rstrip("\n")
    if actual != _expected(block).rstrip("\n"):
        pytest.fail(f"{block.where}: the checker now prints (paste this into the ```text block):\n{actual}",
                    pytrace=False)


def test_every_fragment_is_used():
    for doc, bs in ALL.items():
        texts = "".join(b.text for b in bs if b.lang.startswith("kd") and b.file is None)
        for name in _fragments(doc):
            assert f'use "{name}"' in texts, f"{doc}: fragment {name} is used by no example"


def _commands_of(doc: str) -> list[tuple[str, str]]:
    """(command, where) for each `# tested` line of a page's shell blocks, in order."""
    out = []
    for block in ALL.get(doc, ()):
        if block.lang not in ("sh", "bash", "shell"):
            continue
        for offset, line in enumerate(block.text.splitlines(), start=1):
            if line.rstrip().endswith(TESTED):
                out.append((line.rstrip()[: -len(TESTED)].strip(), f"{doc}:{block.line + offset}"))
    return out


def _tested_commands():
    return [pytest.param(command, id=where) for path in DOCS if path.name != TUTORIAL
            for command, where in _commands_of(path.name)]


_RUNS: dict = {}  # command -> (status, output): the commands only read, so each runs once


def _run(command: str, monkeypatch, capsys, cwd: Path = ROOT, runs: dict = _RUNS) -> tuple[int, str]:
    """Run one kdlang command line in-process from `cwd`: (exit status, output)."""
    from kdlang.cli import main

    if command in runs:
        return runs[command]

    words = shlex.split(command)
    if words[:1] == ["$"]:
        words = words[1:]
    if words[:2] in (["python", "-m"], [".venv/bin/python", "-m"]) and words[2:3] == ["kdlang"]:
        words = ["kdlang", *words[3:]]
    if words and words[0].endswith("/kdlang"):
        words[0] = "kdlang"
    assert words[:1] == ["kdlang"], f"only kdlang commands can be run by the tests: {command}"
    assert not set(words) & {"|", ">", "<", "&&", ";"}, f"a tested command is one plain command: {command}"
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    status = main(words[1:])
    captured = capsys.readouterr()
    runs[command] = status, captured.out + captured.err
    return runs[command]


@pytest.mark.parametrize("command", _tested_commands())
def test_tested_command_exits_0(command, monkeypatch, capsys):
    status, output = _run(command, monkeypatch, capsys)
    assert status == 0, f"`{command}` exited {status}:\n{output}"


def _outputs(tutorial: bool = False):
    return [b for bs in ALL.values() for b in bs
            if b.lang == "text" and b.output_of and (b.doc == TUTORIAL) == tutorial]


@pytest.mark.parametrize("block", _outputs(), ids=lambda b: b.where)
def test_shown_output_is_current(block, monkeypatch, capsys):
    status, output = _run(block.output_of, monkeypatch, capsys)
    assert status == 0, f"`{block.output_of}` exited {status}:\n{output}"
    _assert_excerpt(block, output)


def _assert_excerpt(block: Block, output: str) -> None:
    """The lines of `block` appear in `output` in order (`...` stands for any lines)."""
    lines = [line.rstrip() for line in output.splitlines()]
    position = 0
    for wanted in (line.rstrip() for line in block.text.splitlines()):
        if wanted.strip() == "...":
            continue
        if wanted not in lines[position:]:
            pytest.fail(f"{block.where}: `{block.output_of}` no longer prints (after the lines before it):\n"
                        f"{wanted}\n\nits output:\n{output}", pytrace=False)
        position = lines.index(wanted, position) + 1


def _gen_tables():
    spec = importlib.util.spec_from_file_location("gen_tables", ROOT / "docs" / "gen_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_library_tables_are_current():
    gen = _gen_tables()
    pasted = gen.pasted((ROOT / "docs" / "language.md").read_text(encoding="utf-8"))
    assert pasted == gen.generate(), "the library tables are stale: run `python docs/gen_tables.py --write`"


CONSTRUCTS = {
    "version line": r"^kdlang 1", "recipe": r"^recipe ", "comment": r"#", "use": r"^use ",
    "data": r"^data \w+\(", "named data": r"^data \w+ = ", "model zoo": r"= zoo\.", "model tv": r"= tv\.",
    "from file": r'from "', "from stage": r"from stage ", "frozen": r"\bfrozen\b", "tap": r"^tap ",
    "tap #k": r"^tap .*#\d", "tap output": r"\.output\b", "granularity": r"^granularity ",
    "level": r"^\s*level ", "mirrors": r" mirrors ", "hidden": r"hidden=", ".code": r"\.code\b",
    ".logits": r"\.logits\b", ".T": r"\.T\b", ".levels": r"\.levels\b", "G[l]": r"\w\[l\]",
    "branch": r"^branch ", "schedule": r"^schedule ", "constant": r"constant\(", "linear": r"linear\(",
    "cosine": r"cosine\(", "step": r"step\(", "exponential": r"exponential\(", "warmup": r"warmup\(",
    "excite": r"^\s*excite ", "mean": r"mean\(", "mix": r"mix\(", "loss": r"^\s*loss ", "sum": r"sum\(",
    "for": r"\(for \w+ in ", "label": r"\blabel\b", "index": r"\bindex\b", "stage": r"^stage ",
    "train": r"^\s*train ", "optimizer": r"^\s*optimizer ", "lr": r"^\s*lr ", "losses": r"^\s*losses ",
    "epochs": r"epochs=", "stage data": r"data=\w", "stage batch": r"^stage .*batch=", "report": r"^report ",
    "select": r"select (best|last) on", "noise": r"noise \[", "runtime": r"^runtime\(", "arrow": r"->",
    "range": r"\d\.\.\d",
}


def test_every_construct_has_an_example():
    text = "".join(b.text for b in ALL["language.md"] if b.lang == "kd")
    missing = [name for name, pattern in CONSTRUCTS.items() if not re.search(pattern, text, re.M)]
    assert not missing, f"constructs without a ```kd example in docs/language.md: {missing}"


# ---- every page: snippets, highlighting, Python examples, the API page's names -----------------

def _all_kd_blocks():
    """Every kd block of every page, methods.md included (what the site highlights)."""
    pages = sorted((ROOT / "docs").glob("*.md"))
    return [b for path in pages for b in blocks(path) if b.lang in ("kd", "kd-error", "kd-warning")]


@pytest.mark.parametrize("block", [b for bs in ALL.values() for b in bs if b.lang == "kd" and b.snippet],
                         ids=lambda b: b.where)
def test_snippet_parses(block):
    from kdlang.syntax.errors import SyntaxProblem
    from kdlang.syntax.parser import parse

    try:
        parse(block.text, EXAMPLE)
    except SyntaxProblem as problem:
        pytest.fail(f"{block.where}: the snippet does not parse:\n{problem.diagnostic.format()}", pytrace=False)


def test_every_kd_block_is_highlighted_without_errors():
    from pygments.token import Error

    from kdlang.syntax.highlight import KdlangLexer

    found = _all_kd_blocks()
    assert len(found) > 50
    bad = [b.where for b in found if any(kind in Error for kind, _ in KdlangLexer().get_tokens(b.text))]
    assert not bad, f"kd blocks the lexer cannot read: {bad}"


def test_markers_sit_on_blocks_they_fit():
    for bs in ALL.values():
        for b in bs:
            assert not (b.snippet or b.quote) or b.lang == "kd", f"{b.where}: snippet/quote marks a ```kd block"
            assert not b.tested or b.lang == "python", f"{b.where}: <!-- tested --> marks a ```python block"


def _python_examples():
    return [b for bs in ALL.values() for b in bs if b.lang == "python" and b.tested]


@pytest.mark.parametrize("block", _python_examples(), ids=lambda b: b.where)
def test_python_example_runs(block, monkeypatch):
    if "import lightning" in block.text:
        pytest.importorskip("lightning")
    monkeypatch.chdir(ROOT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block.text, block.where, "exec"), {"__name__": "__docs__"})


def test_the_plain_loop_examples_are_tested():
    tested = [b for b in _python_examples() if "module((images, labels, index))" in b.text]
    assert {b.doc for b in tested} >= {"api.md", "usage.md"}


_API_NAME = re.compile(r"`(kdlang(?:\.[A-Za-z_]\w*)+)")


def _resolve(dotted: str):
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


def test_every_name_on_the_api_page_exists():
    pytest.importorskip("lightning")
    names = sorted(set(_API_NAME.findall((ROOT / "docs" / "api.md").read_text(encoding="utf-8"))))
    assert len(names) > 15
    missing = []
    for name in names:
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"docs/api.md names what kdlang does not have: {missing}"


# ---- the tutorial, step by step ---------------------------------------------------------------

def test_tutorial_runs_step_by_step(tmp_path, monkeypatch, capsys):
    """Every tested step of docs/tutorial.md, in order, in a scratch folder: each exits 0, prints
    what the page shows, and leaves the files the next steps and the reader look at."""
    shutil.copytree(ROOT / "docs" / "tutorial", tmp_path / "docs" / "tutorial")
    steps = _commands_of(TUTORIAL)
    assert [c.split()[1] for c, _ in steps] == ["check", "render", "compile", "report", "compile", "report"]
    runs: dict = {}
    for command, where in steps:
        status, output = _run(command, monkeypatch, capsys, cwd=tmp_path, runs=runs)
        assert status == 0, f"{where}: `{command}` exited {status}:\n{output}"
    for block in _outputs(tutorial=True):
        assert block.output_of in runs, f"{block.where}: shows the output of a command that is no tested step"
        _assert_excerpt(block, runs[block.output_of][1])
    out = tmp_path / "runs" / "tutorial"
    assert (tmp_path / "kd.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    assert (out / "kd-smoke" / "report.html").is_file()  # the run writes its own report
    compared = (out / "compare-smoke.html").read_text(encoding="utf-8")
    assert "Tutorial: KD" in compared and "Tutorial: cnn_small alone" in compared


def test_tutorial_recipes_are_the_ones_it_shows():
    quoted = {b.quote for b in ALL[TUTORIAL] if b.quote}
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "tutorial").glob("*.kd")}
    assert quoted == shipped


# ---- the site -----------------------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (the docs extra)")
def test_site_builds_strict_and_highlights_recipes(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                           cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    language = (site / "language.html").read_text(encoding="utf-8")
    assert '<span class="k">stage</span>' in language  # kdlang's lexer, found through its entry point
    assert "fonts.googleapis" not in language  # builds and reads offline
    cli = (site / "cli.html").read_text(encoding="utf-8")
    from kdlang.cli import _parser

    commands = next(a for a in _parser()._actions if a.choices and isinstance(a.choices, dict)).choices
    for name in commands:
        assert f"usage: kdlang {name}" in cli, f"the CLI reference lacks `kdlang {name}`"
    assert (site / "repo" / "recipes" / "cifar100" / "common.kd").is_file()  # methods.md links to it
