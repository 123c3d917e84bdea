"""Runs as processes on this machine: one per GPU (or `gpus_per_run` GPUs each) where there are
GPUs, else `jobs` at a time, each with its share of the CPU threads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kdlang.sweep.launch.command import die_with_parent


class LocalJob:
    def __init__(self, process: subprocess.Popen, handle, slot: int, release):
        self.process, self.handle, self.slot, self.release = process, handle, slot, release

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None and self.handle is not None:
            self.handle.close()
            self.handle = None
            self.release(self.slot)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: the run stops cleanly at once, resumable


class LocalLauncher:
    def __init__(self, jobs: int | None = None, gpus_per_run: int = 1):
        self.gpus = _visible_gpus()
        per_run = max(1, gpus_per_run)
        if self.gpus:
            groups = [self.gpus[i:i + per_run] for i in range(0, len(self.gpus) - per_run + 1, per_run)]
            self.devices: list[list[str]] = groups[:jobs] if jobs else groups
        else:
            self.devices = [[] for _ in range(jobs or 1)]
        self.slots = len(self.devices)
        self.free = list(range(self.slots))
        self.threads = max(1, (os.cpu_count() or 1) // self.slots)

    def describe(self) -> str:
        if self.gpus:
            return f"local, {self.slots} run(s) at once, GPUs " + " | ".join(",".join(d) for d in self.devices)
        return f"local, {self.slots} run(s) at once, {self.threads} CPU thread(s) each"

    def start(self, argv: list[str], cwd: Path, log: Path) -> LocalJob:
        slot = self.free.pop(0)
        env = dict(os.environ)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.devices[slot])
        elif self.slots > 1:
            env.setdefault("OMP_NUM_THREADS", str(self.threads))  # runs side by side share the cores
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(log, "ab")
        handle.write(f"# {' '.join(argv)}\n".encode())
        handle.flush()
        # its own session: a Ctrl-C in the terminal reaches the sweep, which stops each run once
        process = subprocess.Popen(argv, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True, preexec_fn=die_with_parent)
        return LocalJob(process, handle, slot, self.free.append)

    def close(self) -> None:
        pass


def _visible_gpus() -> list[str]:
    """The GPU ids this process may use (CUDA_VISIBLE_DEVICES if set, else all that torch counts)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a torch without CUDA support: no GPUs
        return []
