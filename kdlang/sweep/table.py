"""A results table from runs: rows x columns of mean ± std over seeds, with paired differences.

The inputs are sweep records (`sweep.json`, or the folder that holds one), run directories, or
folders to search for run directories. Each run has factors, the names a table groups by: from a
sweep record, what the sweep varied (`recipe`, `name`, `folder`, `seed`, each grid key, the group's
`pattern` names); for a run directory alone, what its `run.json` says (`recipe`, `name`, `folder`,
`seed`, `title`, each `--set` key). A grid key can be named by its last part (`epochs`).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import attrs

from kdlang.sweep.record import RECORD, read_record
from kdlang.sweep.results import RunResult, is_run, read_run

NOT_FACTORS = ("seed",)


class TableError(ValueError):
    """A table that cannot be made as asked; one line with what to change."""


@attrs.frozen
class Entry:
    """One run as the table sees it."""

    name: str
    factors: dict
    state: str                      # done, failed, blocked, interrupted, running, waiting, unfinished
    error: str | None = None
    result: RunResult | None = None

    @property
    def value(self) -> float | None:
        return self.result.value if self.result is not None else None


@attrs.frozen
class Cell:
    entries: tuple[Entry, ...]

    @property
    def values(self) -> dict:
        """seed -> metric, for the runs that gave one, in seed order."""
        given = [(e.factors.get("seed"), e.value) for e in self.entries if e.value is not None]
        return dict(sorted(given, key=lambda item: (item[0] is None, item[0] or 0)))

    @property
    def problems(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.value is None)

    @property
    def published(self):
        cited = {e.result.published for e in self.entries if e.result is not None and e.result.published}
        return cited.pop() if len(cited) == 1 else None


@attrs.frozen
class Table:
    rows_key: str
    cols_key: str | None
    rows: tuple[str, ...]
    cols: tuple[str, ...]            # () when there is one column: the metric
    cells: dict                      # (row, col or None) -> Cell
    baseline: str | None
    caption: str

    def cell(self, row: str, col: str | None) -> Cell | None:
        return self.cells.get((row, col))

    def paired(self, row: str, col: str | None) -> list[tuple]:
        """(seed, difference) against the baseline, for the seeds both cells have."""
        if self.baseline is None:
            return []
        base = self.cell(row, self.baseline) if self.cols else self.cell(self.baseline, None)
        here = self.cell(row, col)
        if base is None or here is None:
            return []
        ours, theirs = here.values, base.values
        return [(seed, ours[seed] - theirs[seed]) for seed in ours if seed in theirs]

    @property
    def failures(self) -> list[Entry]:
        return [e for cell in self.cells.values() for e in cell.problems]


def mean_std(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


# ---- collecting ------------------------------------------------------------------------------
def collect(sources: list[str], *, metric: str = "top1", stage: str | None = None, head: str | None = None) -> list[Entry]:
    entries: list[Entry] = []
    seen: set[Path] = set()
    for source in sources:
        path = Path(source)
        if path.is_file() or (path.is_dir() and (path / RECORD).is_file()):
            new = _from_record(path if path.is_file() else path / RECORD, metric, stage, head)
        elif is_run(path):
            new = [_from_run(path, metric, stage, head)]
        elif path.is_dir():
            runs = sorted({p.parent for p in path.rglob("journal.json")})
            if not runs:
                raise TableError(f"{path} holds no sweep record and no run directory")
            new = [_from_run(run, metric, stage, head) for run in runs]
        else:
            raise TableError(f"{path}: no such run directory or sweep record")
        for entry in new:
            folder = entry.result.folder.resolve() if entry.result is not None else None
            if folder is not None and folder in seen:
                continue  # the same run named twice (a record and its folder)
            if folder is not None:
                seen.add(folder)
            entries.append(entry)
    return entries


def _from_record(path: Path, metric, stage, head) -> list[Entry]:
    try:
        record = read_record(path)
    except ValueError as exc:
        raise TableError(str(exc)) from None
    entries = []
    for run in record["runs"]:
        folder = _folder(record, path, run)
        result = None
        state, error = run.get("state", "waiting"), run.get("error")
        if is_run(folder):
            try:
                result = read_run(folder, metric=metric, stage=stage, head=head)
            except ValueError as exc:
                raise TableError(str(exc)) from None
        if result is not None and result.value is not None:
            state, error = "done", None
        elif result is not None and result.problem:
            state, error = "no result", result.problem
        elif state == "done":
            state, error = "unfinished", "its journal says it has not finished"
        factors = dict(run.get("factors", {}))
        factors["seed"] = run.get("seed", factors.get("seed"))
        if result is not None and result.title:
            factors.setdefault("title", result.title)
        entries.append(Entry(run["name"], factors, state, error if state == "done" else error or state, result))
    return entries


def _folder(record: dict, path: Path, run: dict) -> Path:
    """A run's folder: under the sweep's root, else beside the record (a record moved with its runs)."""
    primary = Path(record.get("root", ".")) / run["folder"]
    if primary.exists():
        return primary
    try:
        return path.parent / Path(run["folder"]).relative_to(record.get("out", ""))
    except ValueError:
        return primary


def _from_run(folder: Path, metric, stage, head) -> Entry:
    try:
        result = read_run(folder, metric=metric, stage=stage, head=head)
    except ValueError as exc:
        raise TableError(str(exc)) from None
    recipe = Path(result.recipe)
    factors = {"recipe": recipe.with_suffix("").as_posix(), "name": recipe.stem, "folder": recipe.parent.name,
               "seed": result.seed, "title": result.title}
    for item in result.overrides:
        key, _, value = item.partition("=")
        factors[key.strip()] = value.strip()
    if result.value is not None:
        return Entry(str(folder), factors, "done", None, result)
    if result.problem:
        return Entry(str(folder), factors, "no result", result.problem, result)
    return Entry(str(folder), factors, "unfinished", "the run has not finished", result)


# ---- building ---------------------------------------------------------------------------------
def build(entries: list[Entry], *, rows: str, cols: str | None = None, baseline: str | None = None,
          where: list[str] = ()) -> Table:
    entries = _filtered(entries, where)
    if not entries:
        raise TableError("no run is left to tabulate" + (f" after --where {' '.join(where)}" if where else ""))
    rows_key = _factor(entries, rows)
    cols_key = _factor(entries, cols) if cols else None
    cells: dict = {}
    for entry in entries:
        key = (_text(entry.factors.get(rows_key)), _text(entry.factors.get(cols_key)) if cols_key else None)
        cells.setdefault(key, []).append(entry)
    for key, members in cells.items():
        _one_setting(members, {rows_key, cols_key}, key)
    row_values = tuple(dict.fromkeys(k[0] for k in cells))
    col_values = tuple(dict.fromkeys(k[1] for k in cells)) if cols_key else ()
    if baseline is not None:
        axis = col_values if cols_key else row_values
        if baseline not in axis:
            raise TableError(f"--baseline {baseline}: not a value of {cols_key or rows_key} "
                             f"(its values: {', '.join(axis)})")
    return Table(rows_key, cols_key, row_values, col_values, {k: Cell(tuple(v)) for k, v in cells.items()},
                 baseline, _caption(entries))


def _filtered(entries: list[Entry], where) -> list[Entry]:
    for item in where:
        key, sep, value = item.partition("=")
        if not sep:
            raise TableError(f"--where takes KEY=VALUE, got {item!r}")
        factor = _factor(entries, key.strip())
        entries = [e for e in entries if _text(e.factors.get(factor)) == value.strip()]
    return entries


def _factor(entries: list[Entry], name: str) -> str:
    """The factor `name` names: itself, else the one grid key that ends in `.name`."""
    known = list(dict.fromkeys(k for e in entries for k in e.factors))
    if name in known:
        return name
    ending = [k for k in known if k.endswith("." + name)]
    if len(ending) == 1:
        return ending[0]
    if len(ending) > 1:
        raise TableError(f"`{name}` could be {' or '.join(ending)}; name it in full")
    raise TableError(f"the runs have no factor `{name}`; they have: {', '.join(known)}")


def _one_setting(members: list[Entry], shown: set, key) -> None:
    """A cell holds one setting's seeds: refuse runs that differ in anything else."""
    for factor in dict.fromkeys(k for e in members for k in e.factors):
        if factor in shown or factor in NOT_FACTORS:
            continue
        values = {_text(e.factors[factor]) for e in members if e.factors.get(factor) is not None}
        if len(values) > 1:
            where = " / ".join(k for k in key if k is not None)
            raise TableError(f"the runs of cell {where} differ in `{factor}` ({', '.join(sorted(values))}); "
                             f"add it to --rows/--cols or pick one with --where {factor}=VALUE")


def _caption(entries: list[Entry]) -> str:
    done = [e.result for e in entries if e.result is not None and e.value is not None]
    if not done:
        return "No run has finished."
    first = done[0]
    heads = {(r.stage, r.head) for r in done}
    which = f"`{first.head}` (stage `{first.stage}`)" if len(heads) == 1 else "each run's last stage's first head"
    return (f"{first.split.capitalize()} {first.metric} (%) of {which} at the epoch each recipe's policy selects; "
            "mean ± sample std over seeds, (n) the number of seeds.")


def _text(value) -> str:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return "" if value is None else str(value)
