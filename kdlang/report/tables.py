"""The report's tables: a run's final table, and several runs' tables side by side with differences.

The final table is the run's own `summary.md` (its selection policy decided it: the report does not
decide again). A run without one (interrupted, failed, still going) gets the last committed epoch
of each stage instead, labelled as such.
"""

from __future__ import annotations

import attrs

from kdlang.report.records import RunRecord, Table, number


@attrs.frozen
class Cell:
    text: str
    tone: str = ""   # "better" / "worse" for a difference, "" otherwise


@attrs.frozen
class Grid:
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


def plain(table: Table) -> Grid:
    return Grid(table.header, tuple(tuple(Cell(c) for c in row) for row in table.rows))


def last_epochs(run: RunRecord) -> Table:
    """Each stage's last committed epoch: its heads' val and test top-1 (for a run with no summary)."""
    rows = []
    for stage in run.stages:
        last = run.stage_rows(stage)[-1]
        heads = dict.fromkeys(k.split("/")[1] for k in last if k.count("/") == 2 and k.endswith("/top1"))
        for head in heads:
            rows.append((stage, head, str(last["epoch"]), _pct(last.get(f"val/{head}/top1")),
                         _pct(last.get(f"test/{head}/top1"))))
    return Table(("stage", "head", "last committed epoch", "val top-1", "test top-1"), tuple(rows))


def compared(runs: list[RunRecord]) -> Grid:
    """One row per (stage, head, value) of the first run's final table (then the others' extra rows);
    one column per run; each later run's number with its difference from the first run's. A head
    that a run trained in another stage (`alone` vs `distill`) is matched by its name."""
    tables = [run.summary.final if run.summary else None for run in runs]
    columns = next((t.header for t in tables if t is not None), None)
    if columns is None:
        return Grid(("stage", "head"), ())
    values = [c for c in columns[2:]]
    keys = list(dict.fromkeys((row[0], row[1]) for t in tables if t is not None for row in t.rows))
    header = ("stage", "head", "value", *[run.name for run in runs])
    out = []
    for stage, head in _merged(keys, tables):
        found = [_row(t, stage, head) for t in tables]
        stages = list(dict.fromkeys(r[0] for r in found if r is not None))
        for value in values:
            cells = [_cell(r, columns, value) for r in found]
            first = number(cells[0]) if cells[0] is not None else None
            shown = [Cell(cells[0] or "-")]
            for text in cells[1:]:
                shown.append(_difference(text, first, value))
            out.append((Cell(" / ".join(stages)), Cell(head), Cell(value), *shown))
    return Grid(header, tuple(out))


def _merged(keys: list[tuple[str, str]], tables) -> list[tuple[str, str]]:
    """(stage, head) keys, a head found under another stage in another run counted once."""
    merged: list[tuple[str, str]] = []
    for stage, head in keys:
        same_head = [k for k in merged if k[1] == head]
        if same_head and not any(t is not None and _exact(t, stage, head) and _exact(t, *same_head[0]) for t in tables):
            continue  # the same head in another stage of another run: already a row
        merged.append((stage, head))
    return merged


def _exact(table: Table, stage: str, head: str) -> bool:
    return any(row[0] == stage and row[1] == head for row in table.rows)


def _row(table: Table | None, stage: str, head: str):
    """The table's row for (stage, head), else its only row of that head, else None."""
    if table is None:
        return None
    exact = [row for row in table.rows if row[0] == stage and row[1] == head]
    if exact:
        return exact[0]
    by_head = [row for row in table.rows if row[1] == head]
    return by_head[0] if len(by_head) == 1 else None


def _cell(row, columns, value: str) -> str | None:
    return None if row is None else row[columns.index(value)]


def _difference(text: str | None, first: float | None, value: str) -> Cell:
    mine = number(text) if text is not None else None
    if mine is None or first is None or "epoch" in value:
        return Cell(text or "-")
    delta = mine - first
    tone = "better" if delta > 0 else "worse" if delta < 0 else ""
    return Cell(f"{text} ({delta:+.2f})", tone)


def _pct(x) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "-"
