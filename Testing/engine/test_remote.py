"""``deepmed remote``: a real OpenSSH server on 127.0.0.1 (the sshServer fixture), never a mock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from sshd_fixture import sshServer, ssh_children  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO / "SlicerDeepMed"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="2")
TINY = ["data.patch_size=[16,16,16]", "network.args.channels=[8,16,32]", "network.args.strides=[2,2]",
        "training.iterations_per_epoch=2", "training.val_every=1"]


def deepmed(*arguments, check=False, **kwargs):
    return subprocess.run([sys.executable, "-m", "deepmed", *map(str, arguments)], env=ENV, capture_output=True,
                          text=True, check=check, **kwargs)


def test_check_reports_the_remote_version_and_a_mismatch_on_one_line(sshServer, tmp_path):
    done = deepmed("remote", "check", *sshServer.host_options())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{sshServer.alias}: deepmed ")
    other = tmp_path / "other-python"
    other.write_text('#!/bin/sh\necho \'{"version": "0.0.1", "python": "3", "platform": "x"}\'\n')
    other.chmod(0o755)
    options = sshServer.host_options()
    options[options.index("--python") + 1] = str(other)
    mismatch = deepmed("remote", "check", *options)
    assert mismatch.returncode == 2 and "Traceback" not in mismatch.stderr
    assert mismatch.stderr.count("\n") == 1 and "deepmed 0.0.1" in mismatch.stderr
    unreachable = deepmed("remote", "check", *options[:options.index("--python")], "--port", "1", timeout=60)
    assert unreachable.returncode == 2 and "Traceback" not in unreachable.stderr


def test_a_dropped_connection_leaves_training_running_attach_finishes_and_brings_the_model_back(sshServer,
                                                                                                 tmp_path):
    from DeepMedLib.SelfTestData import writeSyntheticDataset

    manifest = writeSyntheticDataset(tmp_path / "boxes")
    model, jobFile = tmp_path / "local-models" / "boxes", tmp_path / "job.json"
    model.parent.mkdir()
    command = [sys.executable, "-m", "deepmed", "remote", "run", *sshServer.host_options(), "--job-file", jobFile,
               "--", "train", "--dataset", manifest, "--out", model, "--epochs", "4", "--device", "cpu",
               "--progress", "jsonl", *[part for setting in TINY for part in ("--set", setting)]]
    process = subprocess.Popen([str(c) for c in command], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    first = []
    for line in process.stdout:
        first.append(json.loads(line))
        if first[-1]["event"] == "iteration":
            break
    for pid in ssh_children(process.pid):   # the connection drops
        os.kill(pid, signal.SIGKILL)
    rest, stderr = process.communicate(timeout=60)
    first += [json.loads(line) for line in rest.splitlines()]
    assert process.returncode == 75 and first[-1]["event"] == "remote_disconnected", stderr
    assert "deepmed remote attach" in stderr and "Traceback" not in stderr
    assert not model.exists() or not (model / "model.safetensors").exists()

    attached = deepmed("remote", "attach", jobFile, timeout=300)
    assert attached.returncode == 0, attached.stderr
    events = [json.loads(line) for line in attached.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "finished" and "started" not in kinds  # picked up where it left, nothing replayed
    seen = [e for e in first if e["event"] == "epoch"] + [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in seen] == [0, 1, 2, 3]
    assert events[-1]["model_dir"] == str(model)  # the local path, not the remote job folder
    assert (model / "model.json").is_file() or any(model.iterdir())
    return model
