"""The Python API's pipeline: text -> checked graph -> IR (shapes inferred) -> built `Recipe`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from kdlang import plugins
from kdlang.check import check_path
from kdlang.diagnostics import RecipeError
from kdlang.lower.recipe import Recipe
from kdlang.syntax.overrides import apply_overrides


def load(path: str | Path, *, overrides: Sequence[str] = (), allow_missing_checkpoints: bool = False,
         seed: int | None = None) -> Recipe:
    """Load, check and build a recipe (weights initialised from `seed`, else the recipe's
    `runtime(seed=...)`, else 0); raises `RecipeError` (with diagnostics) if it has errors. Each
    model is built once, by the check's shape pass, and handed to the `Recipe` as built."""
    plugins.enable()  # installed packages' and KDLANG_PLUGINS's; import others before calling load
    texts = apply_overrides(Path(path), overrides) if overrides else None
    checked = check_path(path, texts=texts, seed=seed)
    if not checked.ok or checked.ir is None:
        raise RecipeError(checked.errors or checked.diagnostics, checked.sources)
    return Recipe(checked.ir, allow_missing_checkpoints=allow_missing_checkpoints)
