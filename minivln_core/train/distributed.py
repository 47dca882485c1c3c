"""torch.distributed set-up for `torchrun`: gloo on CPU, nccl on GPU; a no-op in one process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def in_job() -> bool:
    """True inside a multi-process job (torchrun's ranks, or `train.spawn`'s)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed() -> DistInfo:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, ...)."""
    if not in_job():
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def wrap(module: nn.Module, info: DistInfo, find_unused: bool = True) -> nn.Module:
    """DistributedDataParallel around a module whose forward computes the loss (unchanged alone).

    find_unused: pretraining draws one objective per step, so some heads get no gradient and DDP
    must search the graph for them; a task that uses every parameter every step passes False.
    """
    if not info.enabled:
        return module
    return nn.parallel.DistributedDataParallel(module, find_unused_parameters=find_unused)


def shard(items: Sequence, info: DistInfo) -> list:
    """This rank's contiguous slice of a global batch (the global batch must divide evenly)."""
    if len(items) % info.world_size:
        raise ValueError(f"global batch of {len(items)} does not split over {info.world_size} processes")
    per = len(items) // info.world_size
    return list(items[info.rank * per:(info.rank + 1) * per])


def mean_over_ranks(values: Mapping[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalars over all processes (for logging)."""
    if not info.enabled or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t)}


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op alone)."""
    if info.enabled:
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's Python object on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
