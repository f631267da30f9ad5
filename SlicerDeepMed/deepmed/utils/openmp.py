"""How OpenMP's idle threads wait, chosen once before PyTorch loads (OpenMP reads it when it starts).

Spinning threads (OpenMP's default: spin a while, then sleep) make a small training step fast on a quiet CPU;
beside other busy processes they fight them for the cores and a step can take ten times as long. Sleeping
threads (``OMP_WAIT_POLICY=PASSIVE``) survive a busy CPU and cost ~20-27% per training step on a quiet one
(benchmarks/bench_cpu_train_levers.py, docs/benchmarks.md "CPU levers of training"). So: passive only when
other processes are running right now; a value set by the user wins.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from pathlib import Path

LOADAVG = Path("/proc/loadavg")
#: Marks a policy deepmed chose (inherited by child processes, which choose again for themselves).
CHOSEN = "DEEPMED_CHOSE_OMP_WAIT_POLICY"
SAMPLES, INTERVAL_S = 3, 0.01


def other_runnable_tasks(loadavg: Path = LOADAVG, samples: int = SAMPLES, interval_s: float = INTERVAL_S) -> int | None:
    """The fewest tasks other than this one that were runnable over a few samples of ``/proc/loadavg`` (its
    fourth field, ``running/total``, counts the reader); None where the file does not exist (not Linux)."""
    fewest = None
    for index in range(samples):
        try:
            running = int(loadavg.read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return None
        others = max(0, running - 1)
        fewest = others if fewest is None else min(fewest, others)
        if fewest == 0:  # a quiet sample settles it: no waiting at start-up on a quiet CPU
            return 0
        if index + 1 < samples:
            time.sleep(interval_s)
    return fewest


def choose_wait_policy(environ: MutableMapping[str, str], loadavg: Path = LOADAVG) -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` when other processes keep the CPU busy, unless the user
    set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` (a policy inherited from a deepmed parent is chosen again);
    returns the policy set (None: OpenMP's default)."""
    inherited = environ.get(CHOSEN)
    if inherited is not None and environ.get("OMP_WAIT_POLICY") == inherited:
        del environ["OMP_WAIT_POLICY"]
    environ.pop(CHOSEN, None)
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return None
    if other_runnable_tasks(loadavg):
        environ["OMP_WAIT_POLICY"] = environ[CHOSEN] = "PASSIVE"
        return "PASSIVE"
    return None
