"""Write a benchmark's markdown report into docs/performance.md, between its own markers
(`<!-- NAME:start -->` ... `<!-- NAME:end -->`), leaving the rest of the file alone."""

from __future__ import annotations

import shlex
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def write_section(name: str, section: str, doc: Path = DOC) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{section.rstrip()}\n{end}"
    if doc.exists():
        text = doc.read_text(encoding="utf-8")
        if start in text and end in text and text.index(start) < text.index(end):
            text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        doc.parent.mkdir(parents=True, exist_ok=True)
        text = ("# Performance\n\nMeasured by the scripts in `benchmarks/` (see `benchmarks/README.md`); "
                "targets in the design document, section 6.\n\n" + block + "\n")
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(doc)


def command(script: str, argv: list[str] | None) -> str:
    """The command line that reproduces a benchmark run, for its section."""
    return f"Command: `{shlex.join(['.venv/bin/python', f'benchmarks/{script}', *(argv or [])])}`"


def publish(name: str, lines: list[str], write: bool = True) -> None:
    """Print a benchmark's section and, unless `write` is false, put it into docs/performance.md."""
    section = "\n".join(lines)
    print(section)
    if write:
        write_section(name, section)
