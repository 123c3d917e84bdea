"""docs/methods.md is tested: it covers every registered loss, its generated tables are current, its
quotes match the recipe files, and its `kd` blocks check.

Markers in docs/methods.md (an HTML comment on the line before a fenced block):

- no marker, ```kd: a complete recipe; `check_text` must report nothing.
- <!-- quote: PATH --> ```kd: the whole of the recipe file PATH (relative to the repository root);
  the block must equal the file, and it is checked with every pass, as PATH (so `use` resolves).
- <!-- fragment: PATH --> ```kd: whole lines of PATH, in order and contiguous. A fragment needs a
  surrounding recipe: PATH itself if it is a recipe, otherwise the first recipe under recipes/ that
  uses PATH. That recipe is checked with skip=("shapes",).
- <!-- diff: OLD NEW --> ```diff: a unified-diff hunk without headers; its context and `-` lines
  must be contiguous lines of OLD, its context and `+` lines contiguous lines of NEW.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

import attrs
import pytest

from kdlang import losses
from kdlang.check import check_text
from markdown_blocks import fenced_blocks

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "methods.md"
TEXT = DOC.read_text(encoding="utf-8")

_MARKER = re.compile(r"^<!--\s*(?P<kind>quote|fragment|diff):\s*(?P<args>.+?)\s*-->$")


@attrs.frozen
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    kind: str | None = None  # quote, fragment, diff
    args: tuple = ()

    @property
    def where(self) -> str:
        return f"methods.md:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for line, lang, text, previous in fenced_blocks(TEXT, "methods.md"):
        marker = _MARKER.match(previous)
        found.append(Block(line, lang, text, marker.group("kind") if marker else None,
                           tuple(marker.group("args").split()) if marker else ()))
    return found


BLOCKS = _blocks()
KD = [b for b in BLOCKS if b.lang == "kd"]
QUOTED = [b for b in BLOCKS if b.kind in ("quote", "fragment")]
DIFFS = [b for b in BLOCKS if b.kind == "diff"]


def _lines(path: str) -> list[str]:
    file = ROOT / path
    assert file.is_file(), f"{path} does not exist"
    return file.read_text(encoding="utf-8").splitlines()


def _contiguous(part: list[str], whole: list[str]) -> bool:
    n = len(part)
    return n > 0 and any(whole[i:i + n] == part for i in range(len(whole) - n + 1))


# ---- coverage and generated tables -----------------------------------------------------------


def test_every_registered_loss_is_documented():
    missing = [name for name in losses.names() if f"`{name}`" not in TEXT]
    assert not missing, f"losses not mentioned in docs/methods.md: {missing}"
    cards = set(re.findall(r"<!-- BEGIN GENERATED: card (\S+) -->", TEXT))
    assert cards == set(losses.names()), f"losses without a card: {sorted(set(losses.names()) - cards)}"


def test_generated_tables_are_current(capsys):
    spec = importlib.util.spec_from_file_location("gen_methods", ROOT / "docs" / "gen_methods.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    status = gen.main(["--check"])
    assert status == 0, capsys.readouterr().out


def test_every_methods_fragment_is_quoted():
    quoted = {b.args[0] for b in QUOTED}
    fragments = sorted((ROOT / "recipes" / "cifar100" / "fragments" / "methods").glob("*.kd"))
    fragments += [ROOT / "recipes" / "cifar100" / "fragments" / f for f in ("mag.kd", "mas.kd", "logit_kd.kd")]
    missing = [str(f.relative_to(ROOT)) for f in fragments if str(f.relative_to(ROOT)) not in quoted]
    assert not missing, f"fragments not quoted in docs/methods.md: {missing}"


def test_links_resolve():
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", TEXT):
        if "://" not in target and not (DOC.parent / target).exists():
            broken.append(target)
    assert not broken, f"links to missing files: {broken}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_anchors_resolve():
    prose = re.sub(r"^```.*?^```", "", TEXT, flags=re.M | re.S)  # headings only, not code comments
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", prose, re.M)}
    broken = sorted({a for a in re.findall(r"\]\(#([^)]+)\)", TEXT) if a not in anchors})
    assert not broken, f"links to missing sections: {broken}"


# ---- quotes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("block", QUOTED, ids=lambda b: b.where)
def test_quote_matches_its_file(block):
    assert block.lang == "kd" and len(block.args) == 1, f"{block.where}: a quote is a ```kd block of one file"
    part, whole = block.text.splitlines(), _lines(block.args[0])
    if block.kind == "quote":
        assert part == whole, f"{block.where}: the block is not the whole of {block.args[0]}"
    else:
        assert _contiguous(part, whole), f"{block.where}: the block is not an exact excerpt of {block.args[0]}"


@pytest.mark.parametrize("block", DIFFS, ids=lambda b: b.where)
def test_diff_matches_its_files(block):
    assert block.lang == "diff" and len(block.args) == 2, f"{block.where}: a diff marker names two files"
    old, new = [], []
    for line in block.text.splitlines():
        sign, rest = line[:1], line[1:]
        assert sign in (" ", "-", "+"), f"{block.where}: a diff line starts with ' ', '-' or '+': {line!r}"
        if sign != "+":
            old.append(rest)
        if sign != "-":
            new.append(rest)
    assert _contiguous(old, _lines(block.args[0])), f"{block.where}: the old side is not in {block.args[0]}"
    assert _contiguous(new, _lines(block.args[1])), f"{block.where}: the new side is not in {block.args[1]}"


# ---- checking --------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _host(path: str) -> Path:
    """The recipe that gives fragment PATH its context: PATH itself, or the first recipe using it."""
    file = (ROOT / path).resolve()
    if re.search(r"^kdlang \d", file.read_text(encoding="utf-8"), re.M):
        return file
    for recipe in sorted((ROOT / "recipes").rglob("*.kd")):
        for used in re.findall(r'^\s*use\s+"([^"]+)"', recipe.read_text(encoding="utf-8"), re.M):
            if (recipe.parent / used).resolve() == file:
                return recipe
    raise AssertionError(f"no recipe under recipes/ uses {path}")


@lru_cache(maxsize=None)
def _check(text: str, file: str, skip: tuple) -> str:
    checked = check_text(text, file, skip=skip)
    return checked.format() if checked.diagnostics else ""


@pytest.mark.parametrize("block", KD, ids=lambda b: b.where)
def test_kd_block_checks_clean(block):
    if block.kind == "quote":
        file = ROOT / block.args[0]
        report = _check(block.text, str(file), ())
    elif block.kind == "fragment":
        host = _host(block.args[0])
        report = _check(host.read_text(encoding="utf-8"), str(host), ("shapes",))
    else:
        report = _check(block.text, "example.kd", ())
    assert not report, f"{block.where}: not clean:\n{report}"
