"""Training speed and peak GPU memory of the default 3D U-Net plan, with the engine's mixed precision and without.

The network is what the planner gives the default ``unet`` for a ``--patch``-cubed patch at 1.5 mm; one training
step is the engine's own (``StepContext``: autocast in bf16 where the GPU supports it, else fp16 with a gradient
scaler; AdamW; Dice + cross-entropy), on random batches already on the device (the data pipeline is not measured).

    python benchmarks/bench_gpu_train.py [--device cuda] [--patch 128] [--batch 2] [--iterations 30]

Without CUDA, ``--device cuda`` prints one line ``no CUDA GPU: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

NO_GPU_EXIT = 2


def require_cuda(device: str) -> None:
    """One line and exit 2 when ``device`` is CUDA and no CUDA GPU is usable (no traceback)."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
        print(f"no CUDA GPU: torch.cuda.is_available() is False ({build}); nothing to measure", file=sys.stderr)
        raise SystemExit(NO_GPU_EXIT)


def measure(device: str, patch: int, batch: int, classes: int, iterations: int, amp: bool) -> dict:
    import torch
    from monai.losses import DiceCELoss

    from deepmed.applications.base import StepContext
    from deepmed.networks import build_network
    from deepmed.planning.network import plan_dense_network

    torch.manual_seed(0)
    plan = plan_dense_network("unet", 1, classes, [patch] * 3, [1.5, 1.5, 1.5], patch_from_config=False)
    network = build_network("unet", plan.args).to(device).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    step = StepContext(torch.device(device), amp)
    image = torch.randn((batch, 1, *reversed(plan.patch_size)), device=device)
    label = torch.randint(0, classes, (batch, 1, *reversed(plan.patch_size)), device=device)
    cuda = device.startswith("cuda")

    def one_step():
        with step.autocast():
            loss = loss_fn(network(image), label)
        step.optimize(loss, optimizer)

    for _ in range(3):  # warm-up: cuDNN's algorithm search, allocator
        one_step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(iterations):
        one_step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"amp": str(step.dtype).removeprefix("torch.") if step.amp else "off", "patch": plan.patch_size,
            "batch": batch, "iterations_per_s": iterations / seconds,
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "parameters_m": sum(p.numel() for p in network.parameters()) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--patch", type=int, default=128, help="patch edge in voxels (a cube)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=14)
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    require_cuda(args.device)
    rows = [measure(args.device, args.patch, args.batch, args.classes, args.iterations, amp) for amp in (True, False)]
    print(f"default 3D U-Net plan, patch {rows[0]['patch']}, batch {args.batch}, {args.classes} classes, "
          f"{rows[0]['parameters_m']:.1f} M parameters, {args.device}")
    print(f"{'AMP':>10}{'it/s':>10}{'peak GPU MiB':>14}")
    for row in rows:
        peak = "" if row["peak_gpu_mib"] is None else f"{row['peak_gpu_mib']:,.0f}"
        print(f"{row['amp']:>10}{row['iterations_per_s']:>10.2f}{peak:>14}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
