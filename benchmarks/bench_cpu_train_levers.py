"""CPU levers of *training*: how OpenMP's waiting threads and bf16 autocast change the time of one training step
of the engine's planned U-Net, on a quiet machine and beside other busy processes.

    python benchmarks/bench_cpu_train_levers.py [--steps 30] [--busy 2] [--out levers.json]

Each row runs in its own process (the OpenMP settings are read once, when torch starts): the U-Net the engine
plans for the MR cohort at a CPU budget (channels 16-128, three down-samplings, two residual units, instance
norm; four 48^3 patches of two channels per step (a batch of two cases, two patches each), four classes),
DiceCE loss and AdamW, as ``deepmed train`` steps it.
The time is the median of ``--steps`` steps after two warm-up steps. "busy" rows run beside ``--busy`` processes
that spin on the CPU (what other users' jobs do on a shared machine). bf16 rows are measured only where the CPU
has native bf16 (``deepmed.volume_inference.sliding.cpu_supports_bf16``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, statistics, sys, time
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
spec = json.loads(sys.argv[1])
torch.manual_seed(0)
net = UNet(3, 2, 4, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2, norm="instance")
x, y = torch.randn(4, 2, 48, 48, 48), torch.randint(0, 4, (4, 1, 48, 48, 48))
loss, optimizer = DiceCELoss(to_onehot_y=True, softmax=True), torch.optim.AdamW(net.parameters(), 1e-3)
times = []
for i in range(spec["steps"] + 2):
    started = time.perf_counter()
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec["bf16"]):
        out = net(x)
    value = loss(out.float(), y)
    value.backward()
    optimizer.step()
    times.append(time.perf_counter() - started)
print(json.dumps({"median_s": statistics.median(times[2:]), "threads": torch.get_num_threads()}))
"""

#: name -> environment of the child process (beside the caller's, with OMP_WAIT_POLICY and GOMP_SPINCOUNT removed)
WAITING = {
    "OpenMP default (spin, then sleep)": {},
    "OMP_WAIT_POLICY=PASSIVE (sleep at once)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "OMP_WAIT_POLICY=ACTIVE (spin)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "GOMP_SPINCOUNT=1000 (spin briefly)": {"GOMP_SPINCOUNT": "1000"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
}


def run_row(env_change: dict, bf16: bool, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_change)
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps({"bf16": bf16, "steps": steps})], env=env,
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"row failed: {env_change} bf16={bf16}: {result.stderr.strip().splitlines()[-1]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["median_s"]


def spinners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--busy", type=int, default=2, help="spinning processes beside the busy rows (0: none)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "SlicerDeepMed"))
    from deepmed.volume_inference.sliding import cpu_supports_bf16

    precisions = [False, True] if cpu_supports_bf16() else [False]
    rows = []
    for load in (["quiet", "busy"] if args.busy else ["quiet"]):
        others = spinners(args.busy) if load == "busy" else []
        try:
            for name, env_change in WAITING.items():
                for bf16 in precisions:
                    seconds = run_row(env_change, bf16, args.steps)
                    rows.append({"load": load, "waiting": name, "precision": "bf16 autocast" if bf16 else "float32",
                                 "step_s": round(seconds, 4)})
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            for process in others:
                process.kill()
    print(f"\n| machine load | OpenMP waiting | precision | s / step (median of {args.steps}) |")
    print("|---|---|---|---:|")
    for row in rows:
        load = "quiet" if row["load"] == "quiet" else f"{args.busy} other busy processes"
        print(f"| {load} | {row['waiting']} | {row['precision']} | {row['step_s']:.3f} |")
    if args.out:
        args.out.write_text(json.dumps({"cpus": os.cpu_count(), "busy": args.busy, "steps": args.steps,
                                        "bf16_native": cpu_supports_bf16(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
