"""Training iterations per second with and without TensorBoard event files (the same small CPU training).

Runs alternate (without, with, without, with, ...) so that a busy machine weighs on both alike; prints the
median iterations/s of each and their ratio.

    python benchmarks/bench_tensorboard_overhead.py [--repeats 3] [--iterations 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from deepmed.phantoms.synthetic import write_cohort
from deepmed.training import tensorboard_log
from deepmed.training.driver import train

SETTINGS = ["data.patch_size=[32,32,32]", "network.args.channels=[8,16,32]", "network.args.strides=[2,2]",
            "training.device=cpu", "training.val_every=1", "training.val_fraction=0.25", "data.num_workers=0"]


def iterations_per_second(manifest: Path, out: Path, iterations: int, board: bool) -> float:
    """Training iterations per second, timed from the first to the last iteration event (validation excluded)."""
    available = tensorboard_log.tensorboard_available
    tensorboard_log.tensorboard_available = available if board else (lambda: False)
    times, validation_s = [], [0.0]
    last = [0.0]

    def on_event(event):
        now = time.perf_counter()
        if event["event"] == "iteration":
            times.append(now)
        elif event["event"] == "epoch":
            last[0] = now
        elif event["event"] == "validation":
            validation_s[0] += now - last[0]  # the validation between two epochs is not training time
    try:
        train(manifest, out, progress=on_event,
              overrides=SETTINGS + [f"training.iterations_per_epoch={iterations // 4}", "training.epochs=4"])
    finally:
        tensorboard_log.tensorboard_available = available
    if board and not any((out / tensorboard_log.TENSORBOARD_DIR).iterdir()):
        raise SystemExit("no TensorBoard event file written")
    return (len(times) - 1) / (times[-1] - times[0] - validation_s[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args()
    if not tensorboard_log.tensorboard_available():
        raise SystemExit("tensorboard is not installed (pip install tensorboard)")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_cohort(Path(tmp) / "data", n_cases=8)
        rates: dict[bool, list[float]] = {False: [], True: []}
        for run in range(args.repeats):
            for board in (False, True):
                rate = iterations_per_second(manifest, Path(tmp) / f"model_{run}_{board}", args.iterations, board)
                rates[board].append(rate)
                print(f"run {run + 1} {'with' if board else 'without'} TensorBoard: {rate:.2f} it/s", flush=True)
    without, with_board = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"median: without {without:.2f} it/s, with {with_board:.2f} it/s, ratio {with_board / without:.3f}")


if __name__ == "__main__":
    main()
