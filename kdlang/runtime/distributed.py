"""Data-parallel training under `torchrun`: process group, sharded batches, reduced metrics.

Each rank takes its slice of the SAME global batch a single process would take (same shuffle,
same order), so N processes with batch B/N each reproduce one process with batch B: gradients are
averaged by DDP, metrics summed across ranks, and rank 0 alone writes files. BatchNorm statistics
are per rank on CPU (SyncBatchNorm needs a GPU); on CUDA, BatchNorm is converted to SyncBatchNorm.

`launch` starts the processes itself (`kdlang compile R.kd --run --nproc N`), through torch's elastic
launcher, so no torchrun command line has to be got right. A WORLD_SIZE above 1 without the
variables a launcher sets is refused, and joining the process group is bounded in time.
"""

from __future__ import annotations

import datetime
import os
import sys
import uuid

import attrs
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@attrs.frozen
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


SINGLE = World()
LAUNCHER_VARIABLES = ("RANK", "MASTER_ADDR", "MASTER_PORT")  # what env:// needs besides WORLD_SIZE
TIMEOUT_VARIABLE = "KDLANG_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600
LAUNCH_HINT = "start the processes with `kdlang compile R.kd --run --nproc N` (or torchrun ... -m kdlang -- compile ...)"


class LaunchError(RuntimeError):
    """The processes of a data-parallel run cannot form (or join) a group; one line, with the fix."""


def from_env(environ=os.environ) -> World:
    """This process's place in the run, from the variables torchrun or `--nproc` set."""
    size = _world_size(environ)
    if size <= 1:
        return SINGLE
    missing = [name for name in LAUNCHER_VARIABLES if not environ.get(name)]
    if missing:
        raise LaunchError(f"WORLD_SIZE={size} is set, but not {', '.join(missing)}: no launcher started this "
                          f"process, and it would wait for peers that never come; unset WORLD_SIZE, or {LAUNCH_HINT}")
    return World(int(environ["RANK"]), size, int(environ.get("LOCAL_RANK", "0")))


def _world_size(environ) -> int:
    value = environ.get("WORLD_SIZE", "1") or "1"
    try:
        return int(value)
    except ValueError:
        raise LaunchError(f"WORLD_SIZE={value!r} is not a whole number; unset it, or {LAUNCH_HINT}") from None


def timeout_s(environ=os.environ) -> int:
    """How long joining the group (and then any one collective) may wait: $KDLANG_DIST_TIMEOUT seconds."""
    value = environ.get(TIMEOUT_VARIABLE, "")
    if not value:
        return DEFAULT_TIMEOUT_S
    if not value.isdigit() or int(value) <= 0:
        raise LaunchError(f"{TIMEOUT_VARIABLE}={value!r} is not a positive number of seconds; unset it or fix it")
    return int(value)


def init(world: World, device: str) -> str:
    """Join the process group (gloo on CPU, nccl on CUDA); returns this rank's device. Waits at
    most `timeout_s()` for the other processes, then raises `LaunchError` instead of hanging."""
    if not world.active:
        return device
    if device.startswith("cuda"):
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        seconds = timeout_s()
        try:
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                    timeout=datetime.timedelta(seconds=seconds))
        except (RuntimeError, ValueError) as exc:  # DistStoreError is a RuntimeError
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LaunchError(f"process {world.rank} of {world.size} could not join the others within {seconds} s "
                              f"({reason}); {LAUNCH_HINT}, or raise ${TIMEOUT_VARIABLE}") from None
    return device


def launch(nproc: int, argv: list[str]) -> int:
    """Run `python -m kdlang ARGV` in `nproc` local processes under torch's elastic launcher
    (a free port, no restarts); the exit status is the first failed worker's, else 0."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"kdlang-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        elastic_launch(config, sys.executable)("-m", "kdlang", *argv)
    except ChildFailedError as failed:
        return _worker_status(failed)
    return 0


def _worker_status(failed) -> int:
    codes = [f.exitcode for _, f in sorted(failed.failures.items())]
    status = next((c for c in codes if c and c > 0), 1)
    if status not in (1, 2):  # 1 and 2: the worker has printed its own one-line reason
        print(f"kdlang: a worker process ended with status {codes[0]}", file=sys.stderr)
    return status


def broadcast(value, world: World):
    """Rank 0's value on every rank (e.g. the run directory's name)."""
    if not world.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


def all_sum(values: list[float], world: World, device) -> list[float]:
    if not world.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def shutdown(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


class GlobalBatchShard(Sampler):
    """Rank r's part of every global batch of a seeded shuffle (the single-process order)."""

    def __init__(self, size: int, global_batch: int, world: World, seed: int):
        if global_batch % world.size:
            raise ValueError(f"the batch size {global_batch} does not split evenly over {world.size} processes")
        self.size, self.global_batch, self.world, self.seed = size, global_batch, world, seed
        self.per_rank = global_batch // world.size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        from kdlang.library.datasets import rng

        generator = torch.Generator()
        generator.manual_seed(rng.seed_int(rng.DOMAIN_SHUFFLE, self.seed, self.epoch))
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self):
        order = self._order()
        for start in range(0, self.size, self.global_batch):
            chunk = order[start:start + self.global_batch]
            share = -(-len(chunk) // self.world.size)
            yield from chunk[self.world.rank * share:(self.world.rank + 1) * share]

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.global_batch)
        share = -(-rest // self.world.size) if rest else 0
        return full * self.per_rank + max(0, min(share, rest - self.world.rank * share))


class StridedShard(Sampler):
    """Every world-size-th sample from rank's offset: evaluation split over ranks, no overlap."""

    def __init__(self, size: int, world: World):
        self.indices = list(range(world.rank, size, world.size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def wrap(module, world: World, device):
    """The module the training loop calls: DDP over the stage module under torchrun, else itself."""
    if not world.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if str(device).startswith("cuda"):
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    ids = [torch.device(device).index] if str(device).startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)
