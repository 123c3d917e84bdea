"""Per-epoch metrics to `metrics.jsonl` and `metrics.csv` (and TensorBoard when it is installed)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from kdlang import durable


def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int, int]:
    """Correct top-1, correct top-5 (top-k for fewer classes) and the batch size."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hits = top.eq(labels.view(-1, 1))
    return int(hits[:, 0].sum()), int(hits.any(dim=1).sum()), int(labels.numel())


class MetricsLog:
    """The run's metrics rows. Both files are rewritten whole and atomically on each row, so a
    crash never leaves half a row, and a resume keeps exactly the rows its journal committed."""

    def __init__(self, run_dir: Path, writer: bool = True):
        self.dir = Path(run_dir)
        self.writer = writer
        self.rows: list[dict] = []
        self._tb = None

    def restore(self, committed: int) -> None:
        """Resume: keep the first `committed` rows of `metrics.jsonl` (later ones were never committed)."""
        path = self.dir / "metrics.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        rows = [json.loads(line) for line in lines if line.strip()]
        self.rows = rows[:committed]
        if self.writer and len(rows) != committed:
            self._write_files()

    def write(self, stage: str, epoch: int, values: dict) -> None:
        row = {"stage": stage, "epoch": epoch + 1, **{k: _round(v) for k, v in values.items()}}
        self.rows.append(row)
        if self.writer:
            self._write_files()
            self._tensorboard(stage, epoch, values)

    def _write_files(self) -> None:
        durable.write_text(self.dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in self.rows))
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        durable.write_text(self.dir / "metrics.csv", table.getvalue())

    def _tensorboard(self, stage: str, epoch: int, values: dict) -> None:
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self._tb = False
                return
            self._tb = SummaryWriter(str(self.dir / "tensorboard"))
        if self._tb:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{stage}/{key}", value, epoch + 1)
            self._tb.flush()


def _round(v):
    return round(v, 6) if isinstance(v, float) else v
