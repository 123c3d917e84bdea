"""The sweep record, `OUT/sweep.json`: every run of the sweep, its state and its error, rewritten
atomically (`kdlang.durable`) on every change, so that a killed sweep leaves a record that `kdlang
table` and the next `kdlang sweep` can read.

The run directories stay the truth about training (their journals say what is finished); the record
adds what only the sweep knows: how the runs were named and grouped (their factors), which run
waits for which, and why a run failed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from kdlang import durable

RECORD = "sweep.json"
FORMAT = 1
STATES = ("waiting", "running", "done", "failed", "interrupted", "blocked")


class SweepRecord:
    def __init__(self, path: Path, plan, command: str):
        self.path = Path(path)
        self.plan = plan
        self.command = command
        self.entries: dict[str, dict] = {run.name: {"state": "waiting"} for run in plan.runs}

    def set(self, name: str, state: str, *, write: bool = True, **details) -> None:
        assert state in STATES, state
        entry = {"state": state}
        kept = {k: v for k, v in self.entries[name].items() if k in ("log", "attempts", "job")}
        entry.update(kept)
        entry.update({k: v for k, v in details.items() if v is not None})
        self.entries[name] = entry
        if write:
            self.write()

    def state(self, name: str) -> str:
        return self.entries[name]["state"]

    def count(self, state: str) -> int:
        return sum(entry["state"] == state for entry in self.entries.values())

    def write(self) -> None:
        runs = []
        for run in self.plan.runs:
            runs.append({"name": run.name, "folder": run.folder, "recipe": run.recipe, "seed": run.seed,
                         "sets": list(run.sets), "factors": run.factors, "needs": list(run.needs),
                         "shared": run.shared, **self.entries[run.name]})
        data = {"format": FORMAT, "sweep": self.plan.spec.source, "root": str(self.plan.root),
                "out": self.plan.spec.out, "command": self.command,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": runs}
        durable.write_text(self.path, json.dumps(data, indent=1) + "\n")


def read_record(path: Path) -> dict:
    """A sweep record written by `SweepRecord` (raises ValueError with a one-line reason)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a sweep record (not JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("runs"), list):
        raise ValueError(f"{path} is not a sweep record written by this kdlang")
    return data
