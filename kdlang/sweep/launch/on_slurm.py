"""Runs as Slurm jobs through submitit: one job a run, on one node, with `gpus_per_run` GPUs,
`cpus_per_run` CPUs and `time` (a run that reaches it is stopped cleanly by Slurm's SIGTERM and
resumed by the next `kdlang sweep`). `cluster = "local"` runs the same jobs with submitit's local
executor, to try a sweep file's Slurm settings on one machine."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from kdlang.sweep.launch.command import run_command


class SlurmJob:
    def __init__(self, job, log: Path):
        self.job, self.log = job, log

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        error = self.job.exception()
        if error is None:
            return int(self.job.result())
        with open(self.log, "a", encoding="utf-8") as handle:  # Slurm killed it (time, memory, node)
            handle.write(f"kdlang: the Slurm job {self.job.job_id} ended without an exit status: "
                         f"{str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__}\n")
        return 1

    def stop(self) -> None:
        self.job.cancel(check=False)


class SlurmLauncher:
    slots: int | None = None  # Slurm queues the jobs

    def __init__(self, folder: Path, settings: dict):
        try:
            import submitit
        except ImportError:
            raise ValueError("--launcher slurm needs the submitit package: pip install 'kdlang[slurm]'") from None
        self.cluster = settings.get("cluster", "slurm")  # never submitit's guess: no Slurm is no silent local run
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError("--launcher slurm: no sbatch on this machine; run kdlang sweep on the cluster's login "
                             "node (cluster = \"local\" in [launcher] tries the jobs here)")
        self.executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        params = {"timeout_min": minutes(settings.get("time", "24:00:00")), "name": "kdlang",
                  "gpus_per_node": int(settings.get("gpus_per_run", 0)), "nodes": 1, "tasks_per_node": 1,
                  "cpus_per_task": int(settings.get("cpus_per_run", 1))}
        if "mem_gb" in settings:
            params["mem_gb"] = settings["mem_gb"]
        for key in ("partition", "account", "qos", "constraint"):
            if key in settings:
                params[f"slurm_{key}"] = settings[key]
        self.executor.update_parameters(**params)
        self.params = params

    def describe(self) -> str:
        where = "submitit's local executor" if self.executor.cluster == "local" else f"Slurm ({self.executor.cluster})"
        partition = f", partition {self.params['slurm_partition']}" if "slurm_partition" in self.params else ""
        return (f"{where}{partition}, {self.params['gpus_per_node']} GPU(s) and {self.params['cpus_per_task']} "
                f"CPU(s) a run, {self.params['timeout_min']} min a job")

    def start(self, argv: list[str], cwd: Path, log: Path) -> SlurmJob:
        return SlurmJob(self.executor.submit(run_command, argv, str(cwd), str(log)), log)

    def close(self) -> None:
        pass


def minutes(text: str) -> int:
    """Slurm's time formats: MM, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (rounded up to whole minutes)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise ValueError(f"--time {text!r}: write minutes or HH:MM:SS (or D-HH:MM:SS)")
    days, first, second, third = (int(g) if g else None for g in match.groups())
    if days is None and second is None:
        return first  # plain minutes
    if days is not None and second is None:
        h, m, s = first, 0, 0
    elif third is None:
        h, m, s = (first, second, 0) if days is not None else (0, first, second)
    else:
        h, m, s = first, second, third
    return (days or 0) * 1440 + h * 60 + m + (1 if s else 0)
