"""Per-epoch metrics to `metrics.jsonl` and `metrics.csv` (and TensorBoard when it is installed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch


def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int, int]:
    """Correct top-1, correct top-5 (top-k for fewer classes) and the batch size."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hits = top.eq(labels.view(-1, 1))
    return int(hits[:, 0].sum()), int(hits.any(dim=1).sum()), int(labels.numel())


class MetricsLog:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.rows: list[dict] = []
        self._tb = None

    def write(self, stage: str, epoch: int, values: dict) -> None:
        row = {"stage": stage, "epoch": epoch + 1, **{k: _round(v) for k, v in values.items()}}
        self.rows.append(row)
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        self._write_csv()
        self._tensorboard(stage, epoch, values)

    def _write_csv(self) -> None:
        rows = self._all_rows()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with open(self.dir / "metrics.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    def _all_rows(self) -> list[dict]:
        path = self.dir / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

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
