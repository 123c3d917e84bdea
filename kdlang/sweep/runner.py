"""Run a sweep's plan: skip what is finished, resume what was interrupted, start what is ready.

Each run is `kdlang compile RECIPE --run --out DIR` (or `--resume DIR`) in its own process, started
by a launcher, so a run that fails or crashes takes no other down. A run starts once every run it
loads checkpoints from is done; a failed run blocks only the runs that need it. Ctrl-C or SIGTERM
stops every running run cleanly (each keeps its committed epochs) and the same command continues.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import time
from pathlib import Path

from kdlang.runtime.rundir import JOURNAL, Journal, RunDirError
from kdlang.runtime.run import terminate_as_interrupt
from kdlang.sweep.record import RECORD, SweepRecord

DIAGNOSTIC = re.compile(r"^\S.*:\d+:\d+: error: ")
LOGS = "sweep-logs"


def folder_state(folder: Path) -> str:
    """`finished`, `started` (a journal: resume it), `leftovers` (files but no journal: a run that
    died before its first commit) or `empty`."""
    if (folder / JOURNAL).exists():
        try:
            return "finished" if Journal.read(folder).finished else "started"
        except RunDirError:
            return "started"  # resuming reports the damage in one line, with what to do
    if folder.is_dir() and any(folder.iterdir()):
        return "leftovers"
    return "empty"


def run_command(plan, run, state: str) -> list[str]:
    """The command line that starts (or continues) one run."""
    argv = [sys.executable, "-m", "kdlang", "compile", run.recipe, "--run"]
    if state == "started":
        argv += ["--resume", run.folder]
    else:
        argv += ["--out", run.folder] + (["--overwrite"] if state == "leftovers" else [])
    argv += ["--seed", str(run.seed)]
    for item in run.sets:
        argv += ["--set", item]
    if plan.spec.smoke:
        argv.append("--smoke")
    nproc = plan.spec.launcher.get("nproc_per_run", 1)
    if nproc > 1:
        argv += ["--nproc", str(nproc)]
    return argv


def one_line_error(log: Path, code: int) -> str:
    """What went wrong, in one line, from the last attempt's output: the first error diagnostic,
    else the last `kdlang: ...` message, else the last line."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"exit status {code} (no log)"
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("# ")]
    lines = [line.rstrip() for line in lines[starts[-1] + 1 if starts else 0:] if line.strip()]
    for line in lines:
        if DIAGNOSTIC.match(line):
            return line
    messages = [line for line in lines if line.startswith("kdlang: ")]
    if messages:
        return messages[-1]
    if lines:
        return f"exit status {code}: {lines[-1].strip()}"
    return f"exit status {code}"


class Sweep:
    def __init__(self, plan, launcher, *, command: str = "kdlang sweep", say=print, poll_seconds: float = 0.3):
        self.plan, self.launcher, self.say, self.poll_seconds = plan, launcher, say, poll_seconds
        self.root = plan.root
        self.out = self.root / plan.spec.out
        self.record = SweepRecord(self.out / RECORD, plan, command)
        self.command = command
        self.active: dict[str, tuple] = {}   # name -> (job, started, resumed)
        self.finished_now = 0

    # ---- the loop ------------------------------------------------------------------------
    def run(self) -> int:
        started = time.monotonic()
        with _locked(self.out), terminate_as_interrupt():
            self.say(f"sweep: {len(self.plan.runs)} runs into {self.plan.spec.out} ({self.launcher.describe()})")
            pending = self._skip_finished()
            try:
                while pending or self.active:
                    changed = self._start_ready(pending)
                    changed |= self._collect()
                    if not changed:
                        time.sleep(self.poll_seconds)
            except KeyboardInterrupt:
                self._stop_all()
                self.say(f"sweep: interrupted; every run keeps its committed epochs; continue with: {self.command}")
                return 130
            finally:
                self.launcher.close()
        return self._summary(time.monotonic() - started)

    def _skip_finished(self) -> list:
        pending, skipped, resuming = [], 0, 0
        for run in self.plan.runs:
            state = folder_state(self.root / run.folder)
            other = _other_values(self.root / run.folder, run, self.plan.spec.smoke) if state == "finished" else None
            if other:
                self.record.set(run.name, "failed", write=False,
                                error=f"{run.folder} holds a finished run made with {other}; move it away or sweep "
                                      "into another --out")
            elif state == "finished":
                self.record.set(run.name, "done", note="finished earlier", write=False)
                skipped += 1
            else:
                resuming += state == "started"
                pending.append(run)
        self.record.write()
        if skipped or resuming:
            self.say(f"sweep: {skipped} run(s) finished earlier (skipped), {resuming} to resume")
        return pending

    def _start_ready(self, pending: list) -> bool:
        changed = False
        for run in list(pending):
            states = [self.record.state(n) for n in run.needs]
            stuck = [n for n, s in zip(run.needs, states) if s in ("failed", "blocked", "interrupted")]
            if stuck:
                pending.remove(run)
                self.record.set(run.name, "blocked", error=f"needs {stuck[0]}, which is {self.record.state(stuck[0])}")
                self._progress(run.name)
                changed = True
                continue
            if any(s != "done" for s in states):
                continue
            if self.launcher.slots is not None and len(self.active) >= self.launcher.slots:
                break
            pending.remove(run)
            self._start(run)
            changed = True
        return changed

    def _start(self, run) -> None:
        from kdlang.sweep.gate import first_error

        error = first_error(self.root, run.recipe, run.sets)
        if error is not None:
            self.record.set(run.name, "failed", error=error, seconds=0.0)
            self._progress(run.name)
            return
        folder = self.root / run.folder
        state = folder_state(folder)
        log = self.out / LOGS / (run.name.replace("/", "--") + ".log")
        job = self.launcher.start(run_command(self.plan, run, state), self.root, log)
        attempts = self.record.entries[run.name].get("attempts", 0) + 1
        self.record.set(run.name, "running", log=os.path.relpath(log, self.root), attempts=attempts,
                        resumed=state == "started" or None)
        self.active[run.name] = (job, time.monotonic(), state == "started")

    def _collect(self) -> bool:
        changed = False
        for name, (job, started, resumed) in list(self.active.items()):
            code = job.poll()
            if code is None:
                continue
            del self.active[name]
            self._finish(name, code, time.monotonic() - started, resumed)
            changed = True
        return changed

    def _finish(self, name: str, code: int, seconds: float, resumed: bool) -> None:
        run = self.plan.run(name)
        log = self.root / self.record.entries[name]["log"]
        seconds = round(seconds, 1)
        if code == 0 and folder_state(self.root / run.folder) == "finished":
            self.record.set(name, "done", seconds=seconds, resumed=resumed or None, result=_result_line(self.root / run.folder))
        elif code == 130:
            self.record.set(name, "interrupted", seconds=seconds,
                            error="stopped before it finished (Ctrl-C, SIGTERM or a time limit); the next sweep resumes it")
        else:
            error = one_line_error(log, code) if code != 0 else "exited without finishing its run"
            self.record.set(name, "failed", seconds=seconds, error=error, exit=code)
        self.finished_now += 1
        self._progress(name)

    def _stop_all(self) -> None:
        for job, _, _ in self.active.values():
            job.stop()
        deadline = time.monotonic() + 120
        while self.active and time.monotonic() < deadline:
            for name, (job, started, resumed) in list(self.active.items()):
                code = job.poll()
                if code is not None:
                    del self.active[name]
                    self.record.set(name, "interrupted", seconds=round(time.monotonic() - started, 1),
                                    error="stopped with the sweep; the next sweep resumes it")
            time.sleep(0.1)

    # ---- what it says --------------------------------------------------------------------
    def _progress(self, name: str) -> None:
        entry = self.record.entries[name]
        total = len(self.plan.runs)
        ended = sum(self.record.count(s) for s in ("done", "failed", "blocked", "interrupted"))
        what = entry.get("result") or entry.get("error") or ""
        took = f"{entry['seconds']:.0f} s" if "seconds" in entry else "-"
        tally = (f"{self.record.count('running')} running, {self.record.count('waiting')} waiting, "
                 f"{self.record.count('failed') + self.record.count('blocked')} failed")
        self.say(f"[{ended:>{len(str(total))}}/{total}] {entry['state']:<8} {name}  {took}  {what}  ({tally})")

    def _summary(self, seconds: float) -> int:
        counts = {s: self.record.count(s) for s in ("done", "failed", "blocked", "interrupted")}
        shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        self.say(f"sweep: {shown} of {len(self.plan.runs)} runs in {_duration(seconds)}; "
                 f"record {os.path.relpath(self.record.path, Path.cwd())}")
        for run in self.plan.runs:
            entry = self.record.entries[run.name]
            if entry["state"] in ("failed", "blocked", "interrupted"):
                self.say(f"  {entry['state']}: {run.name}: {entry.get('error', '')}"
                         + (f" (log {entry['log']})" if entry["state"] == "failed" and "log" in entry else ""))
        bad = counts["failed"] + counts["blocked"] + counts["interrupted"]
        if bad:
            self.say(f"sweep: fix what failed and run the same command again: finished runs are skipped")
        return 1 if bad else 0


def _other_values(folder: Path, run, smoke: bool) -> str | None:
    """How the finished run in `folder` was made differently from `run` (seed, --set values, smoke), or None."""
    import json

    try:
        made = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if made.get("seed") != run.seed:
        return f"seed {made.get('seed')}, not {run.seed}"
    if list(made.get("overrides", [])) != list(run.sets):
        given = " ".join(f"--set {s}" for s in made.get("overrides", [])) or "no --set"
        return f"other values ({given})"
    if bool(made.get("smoke")) != smoke:
        return "--smoke" if made.get("smoke") else "full epochs, not --smoke"
    return None


def _result_line(folder: Path) -> str | None:
    from kdlang.sweep.results import read_run

    try:
        result = read_run(folder)
    except ValueError:
        return None
    return result.describe()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@contextlib.contextmanager
def _locked(out: Path):
    """One sweep at a time on an output folder: two would train the same run directories."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "sweep.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another kdlang sweep is running on {out}; wait for it or stop it") from None
        yield
