"""A run directory read into one record: what the report shows, whatever state the run is in.

Every file is optional but one of `journal.json`, `run.json` or `metrics.jsonl`: a run that was
interrupted, failed or is still going is reported with what it has (its committed metrics rows,
its record), and says what it lacks. Nothing here imports torch: a report is drawn from the files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs

MARKERS = ("journal.json", "run.json", "metrics.jsonl")


class ReportError(Exception):
    """A folder that cannot be reported on; the message says what to give instead."""


@attrs.frozen
class Table:
    """A Markdown pipe table of `summary.md`: its header and rows of cell texts."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@attrs.frozen
class Summary:
    """`summary.md` in parts: its tables and its lines of text (the policy, the notes), in order."""

    blocks: tuple  # each a Table or a str

    @property
    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]

    @property
    def final(self) -> Table | None:
        """The selection table (stage, head, selected epoch, top-1 selected and last)."""
        return self.tables[0] if self.tables else None


@attrs.frozen
class RunRecord:
    folder: Path
    name: str                    # what the report calls the run: its folder's name, made unique
    title: str
    meta: dict                   # run.json (empty when absent)
    rows: tuple[dict, ...]       # the committed metrics rows (metrics.jsonl cut at the journal's count)
    operative: str | None        # recipe.kd: the operative recipe
    diagram: str | None          # recipe.svg, from its <svg> element on
    summary: Summary | None      # summary.md: only a run that reached its end has one
    finished: bool

    @property
    def stages(self) -> list[str]:
        return list(dict.fromkeys(row["stage"] for row in self.rows))

    def stage_rows(self, stage: str) -> list[dict]:
        return [row for row in self.rows if row["stage"] == stage]

    @property
    def status(self) -> str:
        """One line: finished, or where it stopped."""
        if self.summary is not None:
            return "finished"
        if not self.rows:
            return "not finished: no epoch committed yet"
        last = self.rows[-1]
        return f"not finished: stopped after stage {last['stage']}, epoch {last['epoch']} (interrupted, failed or running)"

    @property
    def epoch_seconds(self) -> float:
        """Wall time of the committed epochs (training and evaluation, as `metrics.jsonl` records it)."""
        return sum(float(row.get("seconds", 0.0)) for row in self.rows)


def read_run(folder: Path, name: str | None = None) -> RunRecord:
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such run directory")
    if not any((folder / marker).exists() for marker in MARKERS):
        raise ReportError(f"{folder} is not a kdlang run directory (it has none of {', '.join(MARKERS)}); "
                          "give the --out folder of `kdlang compile R.kd --run`")
    journal = _json(folder / "journal.json") or {}
    meta = _json(folder / "run.json") or {}
    rows = _rows(folder / "metrics.jsonl")
    if "metrics_rows" in journal:
        rows = rows[:journal["metrics_rows"]]  # later rows belong to an epoch that never committed
    summary_text = _text(folder / "summary.md")
    return RunRecord(
        folder=folder, name=name or folder.resolve().name,
        title=meta.get("title") or journal.get("identity", {}).get("title") or folder.name,
        meta=meta, rows=tuple(rows), operative=_text(folder / "recipe.kd"), diagram=_svg(folder / "recipe.svg"),
        summary=parse_summary(summary_text) if summary_text is not None else None,
        finished=bool(journal.get("finished")),
    )


def read_runs(folders) -> list[RunRecord]:
    """Records of several runs, named by their folders (with a parent's name where two folders
    share a name, as `a/run` and `b/run` do)."""
    folders = [Path(f) for f in folders]
    names = [f.resolve().name for f in folders]
    clash = {n for n in names if names.count(n) > 1}
    return [read_run(f, f"{f.resolve().parent.name}/{n}" if n in clash else n) for f, n in zip(folders, names)]


def parse_summary(text: str) -> Summary:
    """Tables and text lines of `summary.md` (its `# title` is dropped: the record has the title)."""
    blocks: list = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("|"):
            table = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                table.append(_cells(lines[i]))
                i += 1
            body = [r for r in table[1:] if not all(re.fullmatch(r":?-+:?", c) for c in r)]
            blocks.append(Table(tuple(table[0]), tuple(tuple(r) for r in body)))
            continue
        if line and not line.startswith("# "):
            blocks.append(line)
        i += 1
    return Summary(tuple(blocks))


def number(cell: str) -> float | None:
    """A table cell's number (`62.50`), or None (`-`, a name)."""
    try:
        return float(cell)
    except ValueError:
        return None


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _rows(path: Path) -> list[dict]:
    rows = []
    for line in (_text(path) or "").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a row cut short by a crash of an older kdlang: keep what precedes it
    return [row for row in rows if isinstance(row, dict) and "stage" in row and "epoch" in row]


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _svg(path: Path) -> str | None:
    """The diagram's <svg> element (without the XML prolog and doctype, which cannot sit in HTML)."""
    text = _text(path)
    if text is None or "<svg" not in text:
        return None
    return text[text.index("<svg"):]
