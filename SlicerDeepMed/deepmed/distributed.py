"""Many GPUs / nodes through ``torchrun`` (torch.distributed), not a home-made scheduler: training, and batch
inference (each rank predicts its share of the cases, rank 0 gathers the summary; ``inference/batch.py``).

``torchrun --nproc_per_node=4 -m deepmed train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK. Each process trains
on its own random patches (seeded by rank) and DistributedDataParallel averages the gradients. Every decision
that ends or shapes the run (a stop request on any rank, the time limit, the learning-rate progress, when to
validate) is *agreed*: rank 0's clock decides, any rank may ask to stop, and all ranks act on the same answer.
Validation is sharded across ranks and gathered, so early stopping sees the same metrics everywhere.
Only rank 0 writes files and reports progress.
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
    backend: str = "gloo"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def _tensor(self, values, dtype) -> torch.Tensor:
        device = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        return torch.tensor(values, dtype=dtype, device=device)

    def agree(self, any_rank: list[bool], from_main: list[float]) -> tuple[list[bool], list[float]]:
        """``any_rank`` flags are true when true on any rank; ``from_main`` values are rank 0's."""
        import torch.distributed as dist

        values = [1.0 if f else 0.0 for f in any_rank] + [v if self.is_main else float("-inf") for v in from_main]
        tensor = self._tensor(values, torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        out = tensor.cpu().tolist()
        return [v > 0.5 for v in out[:len(any_rank)]], out[len(any_rank):]

    def gather(self, item) -> list:
        """Every rank's ``item`` (picklable), in rank order, on every rank."""
        import torch.distributed as dist

        items: list = [None] * self.world_size
        dist.all_gather_object(items, item)
        return items

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def init_distributed(device_kind: str) -> DistributedContext | None:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); None for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    backend = "nccl" if device_kind == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    ctx = DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), backend)
    if device_kind == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    return ctx


def agree(dist: DistributedContext | None, any_rank: list[bool], from_main: list[float]):
    """:meth:`DistributedContext.agree` that also works for a single process."""
    if dist is None:
        return list(any_rank), list(from_main)
    return dist.agree(any_rank, from_main)
