"""A one-line progress bar per epoch with the running per-term losses (plain lines when not a tty)."""

from __future__ import annotations

import sys
import time


class Bar:
    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total = label, max(1, total)
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.count = 0
        self.started = time.perf_counter()
        self._last_draw = 0.0

    def update(self, losses: dict) -> None:
        self.count += 1
        now = time.perf_counter()
        if not self.live or (now - self._last_draw < 0.1 and self.count < self.total):
            return
        self._last_draw = now
        width = 24
        filled = int(width * self.count / self.total)
        terms = "  ".join(f"{k} {v:.4f}" for k, v in losses.items())
        rate = self.count / max(now - self.started, 1e-9)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                          f"{self.count}/{self.total} {rate:.1f} it/s  {terms}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def epoch_line(stage: str, epoch: int, epochs: int, losses: dict, metrics: dict) -> str:
    terms = " ".join(f"{k}={v:.4f}" for k, v in losses.items())
    accs = " ".join(f"{k}={v:.2f}" for k, v in metrics.items() if k.endswith("/top1"))
    return f"{stage} epoch {epoch + 1}/{epochs}: {terms} | {accs}"


def evaluation_line(stage: str, metrics: dict) -> str:
    accs = " ".join(f"{k}={v:.2f}" for k, v in metrics.items() if k.endswith("/top1"))
    return f"{stage} evaluation: {accs}"
