"""Which runs wait for which: a recipe's `from "file"` inside another run's directory waits for that run.

A `from` path is read the way the runtime reads it (relative to the recipe's folder, else to the
working directory, which for a sweep is its root). A path inside a folder that the sweep splits
into one run per seed (`teacher/s0`, `teacher/s1`, ...) is a plan error: the recipe names one file,
so the run that writes it must be shared (`share = true` in its group).
"""

from __future__ import annotations

import graphlib
from pathlib import Path

import attrs

from kdlang.sweep.spec import SweepError
from kdlang.syntax.loader import load_path


def checkpoint_paths(recipe: Path) -> list[str]:
    """The `from "file"` paths of a recipe and the fragments it uses, as written."""
    program, _ = load_path(recipe)
    if program is None:
        return []  # it does not parse: its own run reports where
    found = []
    for statement in program.statements:
        checkpoint = getattr(statement, "checkpoint", None)
        if checkpoint is not None and checkpoint.path is not None:
            found.append(checkpoint.path)
    return list(dict.fromkeys(found))


def with_dependencies(root: Path, runs: list, *, smoke: bool = False) -> list:
    """`runs` with `needs` filled in, checked to have no cycle. A checkpoint that no run writes
    must exist already (a smoke run starts without it, as `--smoke` does)."""
    folders = {(root / run.folder).resolve(): run for run in runs}
    split = {(root / run.folder).resolve().parent: run for run in runs if not run.shared}
    paths_of: dict[str, list[str]] = {}
    out = []
    for run in runs:
        if run.recipe not in paths_of:
            paths_of[run.recipe] = checkpoint_paths(root / run.recipe)
        needs = []
        for written in paths_of[run.recipe]:
            producer = _producer(root, run, written, folders, split)
            if producer is not None and producer.name != run.name:
                needs.append(producer.name)
            elif producer is None and not smoke and not _exists(root, run, written):
                raise SweepError(f"{run.recipe} loads \"{written}\", which does not exist and which no run of this "
                                 f"sweep writes (its runs go to {Path(run.folder).parts[0]}/...); train it first, or "
                                 "sweep into the folder the recipe's path names")
        out.append(attrs.evolve(run, needs=tuple(dict.fromkeys(needs))))
    _no_cycle(out)
    return out


def _exists(root: Path, run, written: str) -> bool:
    path = Path(written).expanduser()
    return path.exists() if path.is_absolute() else ((root / run.recipe).parent / path).exists() or (root / path).exists()


def _producer(root: Path, run, written: str, folders: dict, split: dict):
    """The run whose directory holds the file, or None when no run of the sweep writes it."""
    as_written = Path(written).expanduser()
    candidates = [as_written] if as_written.is_absolute() else [
        (root / run.recipe).parent / as_written, root / as_written]
    for candidate in candidates:
        candidate = candidate.resolve()
        for parent in candidate.parents:
            if parent in folders:
                return folders[parent]
    for candidate in candidates:
        for parent in candidate.resolve().parents:
            if parent in split:
                other = split[parent]
                raise SweepError(f"{run.recipe} loads \"{written}\", but the sweep trains {other.recipe} once per "
                                 f"seed ({Path(other.folder).parent}/s<seed>); set share = true in its group so that "
                                 f"one run, {Path(other.folder).parent}, serves every seed")
    return None


def _no_cycle(runs: list) -> None:
    sorter = graphlib.TopologicalSorter({run.name: run.needs for run in runs})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise SweepError(f"the runs load each other's checkpoints in a circle: {cycle}") from None
