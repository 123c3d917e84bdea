"""A one-line progress bar per epoch with the running per-term losses (plain lines when not a tty),
and for long epochs a plain line every N steps (`runtime(log_every=N)`, `--log-every N`)."""

from __future__ import annotations

import sys
import time

from kdlang import terminal


class Bar:
    """Drawn on a terminal only (and not under `-q`); `every` steps it also hands `log` a plain
    line with the running mean of each loss term, which survives in a log file."""

    def __init__(self, label: str, total: int, stream=None, *, every: int | None = None, log=None):
        self.label, self.total = label, max(1, total)
        self.stream = stream or sys.stderr
        self.live = not terminal.quiet() and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.color = self.live and terminal.use_color(self.stream)
        self.every = terminal.settings().log_every or every
        self.log = log
        self.count = 0
        self.started = time.perf_counter()
        self._last_draw = 0.0

    def update(self, losses: dict) -> None:
        self.count += 1
        now = time.perf_counter()
        if self.every and self.log is not None and self.count % self.every == 0:
            if self.live:
                self.stream.write("\r\x1b[K")  # the step line replaces the bar; the next update redraws it
                self.stream.flush()
            self.log(step_line(self.label, self.count, self.total, losses))
            self._last_draw = 0.0
        if not self.live or (now - self._last_draw < 0.1 and self.count < self.total):
            return
        self._last_draw = now
        width = 24
        filled = int(width * self.count / self.total)
        terms = "  ".join(f"{k} {v:.4f}" for k, v in losses.items())
        rate = self.count / max(now - self.started, 1e-9)
        bar = terminal.paint("#" * filled, terminal.GREEN, color=self.color) + "." * (width - filled)
        self.stream.write(f"\r{terminal.paint(self.label, terminal.BOLD, color=self.color)} [{bar}] "
                          f"{self.count}/{self.total} {rate:.1f} it/s  {terms}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def step_line(label: str, step: int, steps: int, losses: dict) -> str:
    """`distill 1/2 step 100/469: ce=0.5123 kd=0.2311` (running means over the epoch so far)."""
    terms = " ".join(f"{k}={v:.4f}" for k, v in losses.items())
    return f"{label} step {step}/{steps}: {terms}"


def epoch_line(stage: str, epoch: int, epochs: int, losses: dict, metrics: dict) -> str:
    terms = " ".join(f"{k}={v:.4f}" for k, v in losses.items())
    accs = " ".join(f"{k}={v:.2f}" for k, v in metrics.items() if k.endswith("/top1"))
    return f"{stage} epoch {epoch + 1}/{epochs}: {terms} | {accs}"


def evaluation_line(stage: str, metrics: dict) -> str:
    accs = " ".join(f"{k}={v:.2f}" for k, v in metrics.items() if k.endswith("/top1"))
    return f"{stage} evaluation: {accs}"
