"""A worker whose stdout reader goes away (the Slicer GUI closed) stops with a checkpoint, exit code 130."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys

import pytest
import torch
from naming import names
from test_training import TINY, write_tiny_dataset

from deepmed.cli.main import EXIT_INTERRUPTED
from deepmed.progress import JsonLinesReporter
from deepmed.training.checkpoint import load_checkpoint
from deepmed.training.driver import train


class _ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_reporter_survives_a_closed_stream_and_asks_to_stop():
    calls = []
    reporter = JsonLinesReporter(_ClosedPipe())
    reporter.watch_output(lambda: calls.append(1))
    reporter.emit("started", epochs=1)
    reporter.emit("iteration", loss=1.0)
    assert reporter.broken and calls == [1]


def test_engine_leaves_sigpipe_ignored():
    code = ("import signal, deepmed.training.driver, deepmed.cli.main; "
            "print(signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "True"


@pytest.mark.parametrize("close_stderr", [False, True], ids=["stdout", "stdout_and_stderr"])
def test_closed_stdout_stops_with_a_checkpoint(tmp_path, close_stderr):
    manifest = write_tiny_dataset(tmp_path / "data", n=3)
    out = tmp_path / "m"
    command = [sys.executable, "-m", "deepmed", "train", "--dataset", str(manifest), "--out", str(out),
               "--epochs", "50", "--progress", "jsonl"] + [a for s in TINY for a in ("--set", s)]
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                stderr=subprocess.PIPE if close_stderr else err_file)
        try:
            kinds = []
            for line in proc.stdout:
                kinds.append(json.loads(line)["event"])
                if kinds.count("iteration") == 2:
                    break
            proc.stdout.close()
            if close_stderr:
                proc.stderr.close()
            code = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
    stderr = err_path.read_text()
    assert kinds[0] == "started"
    assert code == EXIT_INTERRUPTED, stderr
    if not close_stderr:
        assert names(stderr, "BrokenPipeError", "checkpoint")  # why it stopped, and that it kept a checkpoint
        assert names(stderr, "deepmed: stopped:", "epoch")
        assert "Traceback" not in stderr and "Exception ignored" not in stderr
    weights, state = load_checkpoint(out / "checkpoints" / "last", "cpu")
    assert weights and state["trainer"]["epoch"] < 50
    resumed = train(manifest, out, resume=True, epochs=state["trainer"]["epoch"] + 1, progress="none")
    after = torch.load(resumed / "checkpoints" / "last" / "state.pt", weights_only=True)
    assert after["trainer"]["epoch"] == state["trainer"]["epoch"] + 1
