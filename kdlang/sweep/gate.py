"""A run whose recipe, with its `--set` values, has errors never takes a slot: the sweep checks it
first (without the shape pass, which the run does itself) and records the first error line. On a
cluster this saves a queued GPU job that would have stopped at its first line."""

from __future__ import annotations

import functools
from pathlib import Path

from kdlang.check import check_path
from kdlang.syntax.loader import UnreadableRecipe
from kdlang.syntax.overrides import OverrideError, apply_overrides


@functools.lru_cache(maxsize=4096)  # the seeds of one setting check once
def first_error(root: Path, recipe: str, sets: tuple[str, ...]) -> str | None:
    """The first error of `recipe` under `sets` as one line (`file:line:col: error: ...`), or None."""
    path = root / recipe
    try:
        texts = apply_overrides(path, sets) if sets else None
        checked = check_path(path, texts=texts, skip=("shapes", "diagram"))
    except (OverrideError, UnreadableRecipe) as exc:
        return f"kdlang: {exc}"
    if not checked.errors:
        return None
    line = checked.errors[0].format(checked.sources).splitlines()[0]
    return line.replace(str(root) + "/", "", 1) if line.startswith(str(root) + "/") else line
