"""One run's process, wherever a launcher starts it: `kdlang compile ... --run` with its output in a
log file. Module-level and plain, so Ray and submitit can ship it to another machine by reference."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def run_command(argv: list[str], cwd: str, log: str, env: dict | None = None) -> int:
    """Run `argv` in `cwd`, appending its output to `log`; its exit status. Stopped from outside
    (Ctrl-C, SIGTERM, a cancelled task), the run is stopped cleanly first: it keeps every committed
    epoch, and the next sweep resumes it."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        out.flush()
        child = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, **(env or {})}, preexec_fn=die_with_parent)
        previous = _stop_on_sigterm()
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGTERM)
            return child.wait()
        finally:
            _restore(previous)


def die_with_parent() -> None:
    """In the child, before exec: on Linux, ask for SIGTERM when the process that started it dies,
    so that a killed sweep never leaves a run training on behind the next one's back."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop_on_sigterm():
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt
    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (a Ray worker thread): leave signals alone
        return None


def _restore(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
