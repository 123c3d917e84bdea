"""The operative recipe of a run: every file's text as it ran, and where each override came from."""

from __future__ import annotations


def operative_recipe(recipe, overrides=()) -> str:
    program = recipe.checked.program
    parts = [f"# operative recipe of {recipe.path} (files as they ran; overrides applied)"]
    for item in overrides:
        parts.append(f"# --set {item}")
    for parsed in program.files:
        parts.append(f"\n# ---- {parsed.file}\n")
        parts.append(program.sources.get(parsed.file, ""))
    return "\n".join(parts)
