"""Sample GPU utilisation and memory while a benchmark runs, and summarise the samples.

    python benchmarks/gpu_sampler.py sample OUT.csv [--interval-ms 200]   # until SIGTERM / Ctrl-C
    python benchmarks/gpu_sampler.py summary OUT.csv                      # one line: mean/max utilisation, memory

Samples through NVML (``pynvml``) when it imports, else ``nvidia-smi --query-gpu=utilization.gpu,memory.used
--format=csv,noheader,nounits -lms N``; the CSV has one ``utilization_percent,memory_used_mib`` row per sample.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path


def sample_nvml(out: Path, interval_s: float) -> bool:
    try:
        import pynvml
    except ImportError:
        return False
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with open(out, "w") as handle_out:
        while not stop:
            utilization = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
            handle_out.write(f"{utilization},{memory:.0f}\n")
            handle_out.flush()
            time.sleep(interval_s)
    return True


def sample(out: Path, interval_ms: int) -> None:
    try:
        if sample_nvml(out, interval_ms / 1000):
            return
    except KeyboardInterrupt:
        return
    with open(out, "w") as handle:  # replaced by nvidia-smi, which SIGTERM stops the same way
        os.dup2(handle.fileno(), sys.stdout.fileno())
    os.execvp("nvidia-smi", ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                             "--format=csv,noheader,nounits", "-lms", str(interval_ms)])


def summary(path: Path) -> str:
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            utilization, memory = (float(v) for v in line.split(",")[:2])
        except ValueError:
            continue
        rows.append((utilization, memory))
    if not rows:
        return "GPU utilisation: no samples"
    busy = [u for u, _ in rows]
    return (f"GPU utilisation over the inference: mean {sum(busy) / len(busy):.0f}%, max {max(busy):.0f}% "
            f"({len(rows)} samples); memory used up to {max(m for _, m in rows):,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("sample", "summary"))
    parser.add_argument("csv", type=Path)
    parser.add_argument("--interval-ms", type=int, default=200)
    args = parser.parse_args()
    if args.action == "sample":
        sample(args.csv, args.interval_ms)
    else:
        print(summary(args.csv))


if __name__ == "__main__":
    main()
