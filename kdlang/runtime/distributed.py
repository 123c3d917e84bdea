"""Data-parallel training under `torchrun`: process group, sharded batches, reduced metrics.

Each rank takes its slice of the SAME global batch a single process would take (same shuffle,
same order), so N processes with batch B/N each reproduce one process with batch B: gradients are
averaged by DDP, metrics summed across ranks, and rank 0 alone writes files. BatchNorm statistics
are per rank on CPU (SyncBatchNorm needs a GPU); on CUDA, BatchNorm is converted to SyncBatchNorm.
"""

from __future__ import annotations

import os

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


def from_env() -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: str) -> str:
    """Join the process group (gloo on CPU, nccl on CUDA); returns this rank's device."""
    if not world.active:
        return device
    if device.startswith("cuda"):
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


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
