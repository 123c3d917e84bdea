"""Kill real kdlang processes at chosen instants, resume them, and read what a user takes away.

Each run is a child process forked from a server that has already imported torch and kdlang
(`processes`), so a child costs a training run, not an interpreter start. A child can be told to send itself a
signal at its Nth durable-write boundary (`kdlang.runtime.durable.at_boundary`: before, during
and after every file a run writes), or the parent can signal it at a random moment.

A child also notes its own outcome in a file beside its log, because under load the forkserver can
lose a child's exit status and report 255 (cpython issue 140867); `run` then reads the note.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch

from processes import CONTEXT, enter, redirect

EXPORTS = ("student.pt", "models", "components")
TEXTS = ("summary.md", "recipe.kd", "run.json", "recipe.dot")


def _child(argv, kill_at, signum, log_path, trace_path, cwd, sketch):
    """Run `kdlang ARGV` with its output in `log_path`; signal itself at boundary `kill_at`."""
    enter(cwd)
    redirect(1, log_path)
    redirect(2, log_path)
    from kdlang.cli import main
    from kdlang import durable

    seen = []
    outcome = Path(_outcome_path(log_path))

    def boundary(point, path):
        seen.append(f"{point} {Path(path).name}")
        if len(seen) == kill_at:
            sys.stdout.flush()
            outcome.write_text(str(-signum))  # replaced below if the run survives the signal
            os.kill(os.getpid(), signum)

    durable.at_boundary = boundary
    if sketch:
        _sketch_plots()
    try:
        code = main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if trace_path:
            Path(trace_path).write_text("\n".join(seen) + "\n")
    outcome.write_text(str(code))
    os._exit(code)


def _sketch_plots() -> None:
    """Stand in for matplotlib in the run's report: the same PNG files are written, at the same
    boundaries, holding a few bytes. Drawing is half of this small run's time, and the pictures'
    contents are not what a kill test compares (tests/test_report.py checks them)."""
    from kdlang.report import plots

    plots._png = lambda runs, drawn, rows_of, title: b"\x89PNG\r\n\x1a\n" + repr((title, drawn)).encode()


def _outcome_path(log_path) -> str:
    return f"{log_path}.outcome"


def _exit_code(child, log: Path, sent: int | None) -> int:
    """The child's exit code; where the forkserver lost it (255), the outcome the child noted,
    or the SIGKILL the parent sent (a child cannot note that)."""
    if child.exitcode != 255:
        return child.exitcode
    noted = Path(_outcome_path(log))
    if noted.exists():
        return int(noted.read_text())
    if sent == signal.SIGKILL:
        return -signal.SIGKILL
    raise RuntimeError(f"the forkserver lost a child that noted no outcome (log: {log})")


def run(argv, log: Path, *, kill_at=None, signum=signal.SIGKILL, trace=None, signal_after=None,
        timeout=180, cwd=None, sketch=False) -> int:
    """Exit code of `kdlang ARGV` in a child (negative: killed by that signal). `signal_after`
    seconds: the parent sends `signum` then (a random-instant fault). `sketch`: the report's
    pictures are stood in for (`_sketch_plots`)."""
    Path(_outcome_path(log)).unlink(missing_ok=True)
    child = CONTEXT.Process(target=_child, args=(argv, kill_at, signum, str(log), trace and str(trace),
                                                  str(cwd or os.getcwd()), sketch))
    child.start()
    sent = None
    if signal_after is not None:
        child.join(signal_after)
        if child.exitcode is None:
            os.kill(child.pid, signum)
            sent = signum
    child.join(timeout)
    if child.exitcode is None:
        child.kill()
        child.join()
        raise TimeoutError(f"kdlang {' '.join(argv)} did not end in {timeout} s (log: {log})")
    return _exit_code(child, log, sent)


def finish(recipe_argv, folder: Path, log: Path, *, sketch=False) -> int:
    """Resume `folder` as a user would after a crash: `--resume`, or, if the run says it never
    started, start it afresh as the message advises. Returns the exit code of the last attempt."""
    code = run([*recipe_argv, "--resume", str(folder)], log, sketch=sketch)
    text = log.read_text()
    if code == 2 and ("not a kdlang run" in text or "no such run directory" in text):
        code = run([*recipe_argv, "--out", str(folder), "--overwrite"], log, sketch=sketch)
    return code


def artefacts(folder: Path) -> dict:
    """What a user takes away from a run: exported weights, metrics (without wall times), texts."""
    found = {}
    for name in EXPORTS:
        for path in sorted((folder / name).rglob("*.pt")) if (folder / name).is_dir() else [folder / name]:
            if not path.exists():
                found[name] = None
                continue
            payload = torch.load(path, map_location="cpu", weights_only=True)
            found[str(path.relative_to(folder))] = {k: v.clone() for k, v in payload["state_dict"].items()}
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    found["metrics.jsonl"] = [_timeless(row) for row in rows]
    with open(folder / "metrics.csv", newline="") as handle:
        found["metrics.csv"] = [_timeless(row) for row in csv.DictReader(handle)]
    for name in TEXTS:
        found[name] = (folder / name).read_text()
    found["finished"] = json.loads((folder / "journal.json").read_text())["finished"]
    return found


def differences(expected: dict, got: dict) -> list[str]:
    """The artefacts that differ (tensors compared bit for bit)."""
    wrong = sorted(set(expected) ^ set(got))
    for key in sorted(set(expected) & set(got)):
        a, b = expected[key], got[key]
        if isinstance(a, dict) and a and all(isinstance(v, torch.Tensor) for v in a.values()):
            same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        else:
            same = a == b
        if not same:
            wrong.append(key)
    return wrong


def leftovers(folder: Path) -> list[str]:
    """Files a finished run should not hold: temp files, checkpoints no commit points at."""
    journal = json.loads((folder / "journal.json").read_text())
    wanted = {journal["state"], journal["best"]}
    stray = [str(p.relative_to(folder)) for p in folder.rglob("*.tmp")]
    store = folder / "checkpoints"
    stray += [f"checkpoints/{p.name}" for p in store.iterdir() if f"checkpoints/{p.name}" not in wanted]
    return stray


def _timeless(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("seconds", "data_wait")}


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started
