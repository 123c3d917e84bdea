"""Runs as Ray tasks: each task starts one run's process on a node with the resources it asks for
(`cpus_per_run`, `gpus_per_run`; Ray sets CUDA_VISIBLE_DEVICES). The nodes must see the same
folders as this machine (the recipes, the data and the sweep's output): a shared file system."""

from __future__ import annotations

from pathlib import Path

from kdlang.sweep.launch.command import run_command


class RayJob:
    def __init__(self, ray, ref, log: Path):
        self.ray, self.ref, self.log = ray, ref, log

    def poll(self) -> int | None:
        ready, _ = self.ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        try:
            return int(self.ray.get(self.ref))
        except Exception as exc:  # the task died (a lost node, a cancelled task): the run resumes next time
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(f"kdlang: the Ray task ended without an exit status: {str(exc).splitlines()[0]}\n")
            return 1

    def stop(self) -> None:
        self.ray.cancel(self.ref)  # a KeyboardInterrupt in the task: run_command stops the run cleanly


class RayLauncher:
    slots: int | None = None  # Ray queues the tasks until their resources are free

    def __init__(self, address: str | None = None, cpus: float = 1.0, gpus: float = 0.0):
        try:
            import ray
        except ImportError:
            raise ValueError("--launcher ray needs the ray package: pip install 'kdlang[ray]'") from None
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except Exception as exc:  # no cluster at that address, a version mismatch: one line, not Ray's trace
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ValueError(f"--launcher ray: cannot start or reach Ray{f' at {address}' if address else ''}: "
                                 f"{first}") from None
        self.cpus, self.gpus = cpus, gpus
        self.task = ray.remote(run_command).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)

    def describe(self) -> str:
        nodes = len(self.ray.nodes())
        return f"ray, {nodes} node(s), {self.cpus:g} CPU(s) and {self.gpus:g} GPU(s) a run"

    def start(self, argv: list[str], cwd: Path, log: Path) -> RayJob:
        return RayJob(self.ray, self.task.remote(argv, str(cwd), str(log)), log)

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()
