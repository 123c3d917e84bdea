"""The documentation is tested: its examples check, its error examples print what they say, its
tested commands run, and its library tables match the registries.

Conventions in docs/language.md and docs/usage.md (see the top of docs/language.md):

- ```kd        a complete recipe; `kdlang check` must report nothing (no error, no warning).
- ```kd-error  a recipe with a mistake; the ```text block right after it is the exact output
  ```kd-warning of the checker (`Checked.format()`), errors resp. warnings only.
- <!-- file: NAME --> before a ```kd block: the block is a fragment stored as NAME for the `use`
  lines of later blocks of the same document; it is checked through the recipes that use it.
- <!-- fragment --> before a ```kd block: a fragment that cannot be shape-checked; it is checked
  with skip=("shapes",).
- A line of a ```sh block that ends with `# tested` is a kdlang command; it must exit 0. It runs
  in-process (`kdlang.cli.main`) from the repository root, so it costs no extra torch import.
- <!-- output of: COMMAND --> before a ```text block: the block is an excerpt of what the kdlang
  COMMAND prints; its lines must appear in that output in the same order (`...` skips lines).

Every block is checked under the file name `example.kd`.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import attrs
import pytest

from kdlang.check import check_path, check_text
from markdown_blocks import fenced_blocks

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "docs" / "language.md", ROOT / "docs" / "usage.md")
EXAMPLE = "example.kd"
TESTED = "# tested"

_MARKER = re.compile(r"^<!--\s*(file:\s*(?P<file>\S+)|(?P<fragment>fragment)|output of:\s*(?P<output>.+?))\s*-->\s*$")


@attrs.frozen
class Block:
    doc: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    file: str | None = None  # <!-- file: NAME -->
    fragment: bool = False  # <!-- fragment -->
    output_of: str | None = None  # <!-- output of: COMMAND -->

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
                           output_of=marker.group("output") if marker else None))
    return found


ALL = {path.name: blocks(path) for path in DOCS if path.exists()}


def _recipes():
    return [b for bs in ALL.values() for b in bs if b.lang == "kd" and b.file is None]


def _failures():
    return [b for bs in ALL.values() for b in bs if b.lang in ("kd-error", "kd-warning")]


def _fragments(doc: str) -> dict:
    return {b.file: b.text for b in ALL.get(doc, ()) if b.lang == "kd" and b.file}


def _check(block: Block):
    skip = ("shapes",) if block.fragment else ()
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


def _tested_commands():
    out = []
    for path in DOCS:
        for block in ALL.get(path.name, ()):
            if block.lang not in ("sh", "bash", "shell"):
                continue
            for offset, line in enumerate(block.text.splitlines(), start=1):
                if line.rstrip().endswith(TESTED):
                    out.append(pytest.param(line.rstrip()[: -len(TESTED)].strip(),
                                            id=f"{path.name}:{block.line + offset}"))
    return out


_RUNS: dict = {}  # command -> (status, output): the commands only read, so each runs once


def _run(command: str, monkeypatch, capsys) -> tuple[int, str]:
    """Run one kdlang command line in-process from the repository root: (exit status, output)."""
    from kdlang.cli import main

    if command in _RUNS:
        return _RUNS[command]

    words = shlex.split(command)
    if words[:1] == ["$"]:
        words = words[1:]
    if words[:2] in (["python", "-m"], [".venv/bin/python", "-m"]) and words[2:3] == ["kdlang"]:
        words = ["kdlang", *words[3:]]
    if words and words[0].endswith("/kdlang"):
        words[0] = "kdlang"
    assert words[:1] == ["kdlang"], f"only kdlang commands can be run by the tests: {command}"
    assert not set(words) & {"|", ">", "<", "&&", ";"}, f"a tested command is one plain command: {command}"
    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    status = main(words[1:])
    captured = capsys.readouterr()
    _RUNS[command] = status, captured.out + captured.err
    return _RUNS[command]


@pytest.mark.parametrize("command", _tested_commands())
def test_tested_command_exits_0(command, monkeypatch, capsys):
    status, output = _run(command, monkeypatch, capsys)
    assert status == 0, f"`{command}` exited {status}:\n{output}"


def _outputs():
    return [b for bs in ALL.values() for b in bs if b.lang == "text" and b.output_of]


@pytest.mark.parametrize("block", _outputs(), ids=lambda b: b.where)
def test_shown_output_is_current(block, monkeypatch, capsys):
    status, output = _run(block.output_of, monkeypatch, capsys)
    assert status == 0, f"`{block.output_of}` exited {status}:\n{output}"
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
