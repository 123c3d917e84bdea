"""A recipe diagram's DOT text turned into the file a suffix names, through graphviz's `dot`.

The drawing itself is the front end's (`kdlang.graph.render`); the IR carries its DOT text, so a
run writes the diagram without reading the recipe graph.
"""

from __future__ import annotations

import shutil

DOT_SUFFIXES = (".dot", ".gv")
RENDERED_SUFFIXES = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
SUPPORTED = ", ".join([*RENDERED_SUFFIXES, *DOT_SUFFIXES])

MISSING_DOT = (
    "rendering {suffix} needs the graphviz `dot` program, which is not installed; "
    "install it with `apt-get install -y graphviz` (or `brew install graphviz`), "
    "or write DOT text instead (`-o recipe.dot`), which works without it"
)


class RenderError(Exception):
    """The picture could not be written (unknown format, no graphviz executable, unwritable path)."""


def check_suffix(suffix: str, name: str = "the picture") -> None:
    if suffix not in DOT_SUFFIXES and suffix not in RENDERED_SUFFIXES:
        shown = f"`{suffix}`" if suffix else "no suffix"
        raise RenderError(f"cannot render {name}: unknown format ({shown}); the suffix must be one of {SUPPORTED}")


def picture_bytes(dot_source: str, suffix: str, name: str = "the picture") -> bytes:
    """The diagram in the format a file suffix names (`.svg`, `.png`, `.pdf`, `.dot`)."""
    check_suffix(suffix, name)
    if suffix in DOT_SUFFIXES:
        return dot_source.encode("utf-8")
    return _pipe(dot_source, RENDERED_SUFFIXES[suffix], suffix)


def _pipe(source: str, fmt: str, suffix: str) -> bytes:
    """Run `dot` on the text in memory, so no intermediate file lands next to the output."""
    import graphviz

    if shutil.which("dot") is None:
        raise RenderError(MISSING_DOT.format(suffix=suffix))
    try:
        return graphviz.Source(source, engine="dot").pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise RenderError(MISSING_DOT.format(suffix=suffix)) from None
    except graphviz.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode("utf-8", "replace").strip()
        raise RenderError(f"graphviz failed to render {suffix}: {detail or exc}") from None
