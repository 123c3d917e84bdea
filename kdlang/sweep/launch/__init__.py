"""Launchers: where a sweep's runs execute. Each starts one run's command and reports its exit
status; the sweep (`kdlang.sweep.runner`) decides what runs when.

- `local`: processes on this machine, `jobs` at a time (one run per GPU when there are GPUs);
- `ray`: tasks on a Ray cluster (or a local Ray), with `cpus_per_run` / `gpus_per_run` resources;
- `slurm`: Slurm jobs through submitit (`cluster = "local"` runs them with submitit's local executor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Job(Protocol):
    def poll(self) -> int | None:
        """The exit status once the run's process has ended, else None."""

    def stop(self) -> None:
        """Ask the run to stop cleanly (it keeps its committed epochs)."""


class Launcher(Protocol):
    slots: int | None  # runs at once; None: as many as the engine schedules

    def start(self, argv: list[str], cwd: Path, log: Path) -> Job: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def make_launcher(settings: dict, out: Path) -> Launcher:
    """The launcher a sweep's `[launcher]` settings (merged with the command line) ask for."""
    kind = settings.get("kind", "local")
    if kind in ("ray", "slurm"):
        launcher = _cluster(kind, settings, out)
        launcher.slots = settings.get("jobs")  # a cap on queued runs (a cluster's submission limit), if given
        return launcher
    from kdlang.sweep.launch.local import LocalLauncher

    return LocalLauncher(jobs=settings.get("jobs"), gpus_per_run=int(settings.get("gpus_per_run", 1) or 1))


def _cluster(kind: str, settings: dict, out: Path):
    if kind == "ray":
        from kdlang.sweep.launch.on_ray import RayLauncher

        return RayLauncher(address=settings.get("address"), cpus=settings.get("cpus_per_run", 1.0),
                           gpus=settings.get("gpus_per_run", 0.0))
    from kdlang.sweep.launch.on_slurm import SlurmLauncher

    return SlurmLauncher(out / "sweep-logs" / "submitit", settings)
