"""Per-epoch metrics to `metrics.jsonl` and `metrics.csv`, and to the run's experiment trackers."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import torch

from kdlang import durable
from kdlang.runtime import tracking


def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int, int]:
    """Correct top-1, correct top-5 (top-k for fewer classes) and the batch size."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hits = top.eq(labels.view(-1, 1))
    return int(hits[:, 0].sum()), int(hits.any(dim=1).sum()), int(labels.numel())


class MetricsLog:
    """The run's metrics rows. Both files are rewritten whole and atomically on each row, so a
    crash never leaves half a row, and a resume keeps exactly the rows its journal committed.

    Every row also goes to the trackers (`kdlang.runtime.tracking`) once the run directory commits it
    (`committed`), so a tracker never shows an epoch that a crash took back: TensorBoard by default
    when it is installed, more when the run attaches them. A tracker that fails is dropped with a
    one-line warning: the run directory is the record, and a tracker's outage must not cost a run.
    """

    def __init__(self, run_dir: Path, writer: bool = True, trackers: list | None = None):
        self.dir = Path(run_dir)
        self.writer = writer
        self.rows: list[dict] = []
        self.tracked = 0  # rows the trackers have
        if trackers is None:
            trackers = tracking.default_trackers(self.dir) if writer else []
        self.trackers: list[tracking.Tracker] = trackers

    def restore(self, committed: int) -> None:
        """Resume: keep the first `committed` rows of `metrics.jsonl` (later ones were never committed)."""
        path = self.dir / "metrics.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        rows = [json.loads(line) for line in lines if line.strip()]
        self.rows = rows[:committed]
        if self.writer and len(rows) != committed:
            self._write_files()
        self._track("restore", list(self.rows))
        self.tracked = len(self.rows)

    def write(self, stage: str, epoch: int, values: dict) -> None:
        row = {"stage": stage, "epoch": epoch + 1, **{k: _round(v) for k, v in values.items()}}
        self.rows.append(row)
        if self.writer:
            self._write_files()

    def committed(self, count: int) -> None:
        """The first `count` rows are committed: the trackers get those they lack."""
        for row in self.rows[self.tracked:count]:
            self._track("log", row)
        self.tracked = max(self.tracked, count)

    def attach(self, trackers: list) -> None:
        """More trackers (MLflow), shown the rows so far."""
        for tracker in trackers:
            self.trackers.append(tracker)
            self._track("restore", self.rows[:self.tracked], only=tracker)

    def finish(self, files: list[Path]) -> None:
        """The run ended well: every tracker gets its outputs and is closed as finished."""
        self._track("finish", files)
        self.close("FINISHED")

    def close(self, status: str) -> None:
        self._track("close", status)
        self.trackers = []

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, kind, _value, _traceback) -> None:
        """Leaving a run on an exception ends the trackers: killed on Ctrl-C/SIGTERM, else failed."""
        if kind is not None:
            self.close("KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")

    def _track(self, method: str, argument, only=None) -> None:
        for tracker in [only] if only is not None else list(self.trackers):
            try:
                getattr(tracker, method)(argument)
            except Exception as exc:  # noqa: BLE001 (any backend failure: network, store, package)
                first = (str(exc).strip().splitlines() or [""])[0]
                print(f"kdlang: warning: {tracker.name} logging stopped: {type(exc).__name__}: {first}",
                      file=sys.stderr)
                self.trackers.remove(tracker)

    def _write_files(self) -> None:
        durable.write_text(self.dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in self.rows))
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        durable.write_text(self.dir / "metrics.csv", table.getvalue())


def _round(v):
    return round(v, 6) if isinstance(v, float) else v
