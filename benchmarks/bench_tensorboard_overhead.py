"""Training iterations per second with and without TensorBoard event files (the same small CPU training).

Runs alternate (without, with, without, with, ...) so that a busy machine weighs on both alike; prints the
median iterations/s of each (from the median iteration, robust to a busy machine's bursts), their ratio, and
the time spent inside the TensorBoard hook itself as a share of the training time.

    python benchmarks/bench_tensorboard_overhead.py [--repeats 3] [--iterations 40]
"""

from __future__ import annotations

import argparse
import itertools
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


def iteration_seconds(manifest: Path, out: Path, iterations: int, board: bool) -> tuple[list[float], float]:
    """Seconds of each training iteration (between two iteration events of one epoch: validation and checkpoints
    fall between epochs), and the seconds spent inside the TensorBoard writer's hook."""
    available, emit = tensorboard_log.tensorboard_available, tensorboard_log.TensorBoardReporter.emit
    in_hook = [0.0]

    def timed_emit(self, event, **fields):
        started = time.perf_counter()
        emit(self, event, **fields)
        in_hook[0] += time.perf_counter() - started

    tensorboard_log.tensorboard_available = available if board else (lambda: False)
    tensorboard_log.TensorBoardReporter.emit = timed_emit
    stamps: list[tuple[int, float]] = []

    def on_event(event):
        if event["event"] == "iteration":
            stamps.append((event["epoch"], time.perf_counter()))
    try:
        train(manifest, out, progress=on_event,
              overrides=SETTINGS + [f"training.iterations_per_epoch={iterations // 4}", "training.epochs=4"])
    finally:
        tensorboard_log.tensorboard_available, tensorboard_log.TensorBoardReporter.emit = available, emit
    if board and not any((out / tensorboard_log.TENSORBOARD_DIR).iterdir()):
        raise SystemExit("no TensorBoard event file written")
    seconds = [b[1] - a[1] for a, b in itertools.pairwise(stamps) if a[0] == b[0]]
    return seconds, in_hook[0]


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
        seconds: dict[bool, list[float]] = {False: [], True: []}
        hook_s, trained_s = 0.0, 0.0
        for run in range(args.repeats):
            for board in (False, True):
                times, in_hook = iteration_seconds(manifest, Path(tmp) / f"model_{run}_{board}", args.iterations,
                                                   board)
                seconds[board] += times
                if board:
                    hook_s, trained_s = hook_s + in_hook, trained_s + sum(times)
                print(f"run {run + 1} {'with' if board else 'without'} TensorBoard: median "
                      f"{1 / statistics.median(times):.2f} it/s", flush=True)
    without, with_board = (1 / statistics.median(seconds[b]) for b in (False, True))
    print(f"median over {len(seconds[False])} / {len(seconds[True])} iterations: without {without:.2f} it/s, "
          f"with {with_board:.2f} it/s (ratio {with_board / without:.3f}); time inside the TensorBoard hook: "
          f"{1e3 * hook_s:.1f} ms of {trained_s:.1f} s of training ({100 * hook_s / trained_s:.3f} %)")


if __name__ == "__main__":
    main()
