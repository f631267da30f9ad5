"""Multi-GPU / multi-node training through ``torchrun`` (torch.distributed), not a home-made scheduler.

``torchrun --nproc_per_node=4 -m deepmed train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; each process
trains on its own random patches (seeded by rank), gradients are averaged by DistributedDataParallel,
and rank 0 alone validates, writes checkpoints and reports progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def init_distributed(device_kind: str) -> DistributedContext | None:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); None for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    ctx = DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device_kind == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    return ctx
