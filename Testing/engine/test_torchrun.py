"""torchrun with 2 CPU processes (gloo): every rank agrees on every decision and exits cleanly.

Paths: a normal run, early stopping, a stop file appearing mid-run, and a time limit. A rank that decided
alone would leave the other blocked in a collective or dying with "Connection closed by peer"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_training import TINY, write_tiny_dataset

from deepmed.training.checkpoint import find_checkpoint

pytestmark = pytest.mark.slow
SETTINGS = [s for s in TINY if "val_every" not in s] + ["training.val_fraction=0.34"]


def torchrun(manifest: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "deepmed",
               "train", "--dataset", str(manifest), "--out", str(out), "--progress", "jsonl", *extra]
    for setting in SETTINGS:
        command += ["--set", setting]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def events_of(stdout: str) -> list[dict]:
    out = []
    for line in stdout.splitlines():
        line = line[line.find("{"):] if "{" in line else ""  # torchrun may prefix lines with the rank
        if line:
            out.append(json.loads(line))
    return out


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[list[dict], str]:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    assert "Connection closed by peer" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    return events_of(stdout), stderr


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("ddp") / "data", n=5)


def test_two_ranks_train_validate_write_once_and_agree_to_stop_early(manifest, tmp_path):
    """One run for both: validation every epoch and early stopping after one validation without improvement
    (a learning rate of 1e-12 improves nothing): every rank must take the decision to stop together."""
    events, _ = finish(torchrun(manifest, tmp_path / "model", "--epochs", "8", "--set", "training.val_every=1",
                                "--set", "training.early_stopping=1", "--set", "optimizer.lr=1e-12"))
    started = next(e for e in events if e["event"] == "started")
    assert started["world_size"] == 2
    assert sum(e["event"] == "started" for e in events) == 1  # rank 0 alone reports
    assert events[-1]["event"] == "finished" and 2 <= events[-1]["epochs"] < 8  # stopped early (measured: at 2)
    assert sum(e["event"] == "validation" for e in events) == events[-1]["epochs"]  # every epoch, reported once
    assert (tmp_path / "model" / "model.safetensors").is_file() and (tmp_path / "model" / "plan.json").is_file()


def test_a_stop_file_stops_every_rank_with_a_checkpoint(manifest, tmp_path):
    stop_file = tmp_path / "stop"
    process = torchrun(manifest, tmp_path / "model", "--epochs", "500", "--stop-file", str(stop_file))
    seen = 0
    for line in process.stdout:
        if '"iteration"' in line:
            seen += 1
            if seen == 3:
                stop_file.touch()
                break
    events, stderr = finish(process)
    assert any(e["event"] == "stopped" for e in events), stderr[-2000:]
    assert find_checkpoint(tmp_path / "model" / "checkpoints" / "last") is not None


def test_a_time_limit_ends_every_rank_on_time(manifest, tmp_path):
    started = time.time()
    events, _ = finish(torchrun(manifest, tmp_path / "model", "--time-limit", "15s"))
    wall = time.time() - started
    assert events[-1]["event"] == "finished" and events[-1]["ended_by"] == "time"
    assert sum(e["event"] == "iteration" for e in events) > 2  # it trained within the budget
    assert wall < 15 + 15, wall  # the budget counts from each rank's start; torchrun itself adds a few seconds
