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
from sshd_fixture import ssh_children, ssh_server_fixture  # noqa: F401 - the sshServer fixture

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


@pytest.mark.slow
def test_a_dropped_connection_leaves_training_running_attach_finishes_and_brings_the_model_back(sshServer,
                                                                                                 tmp_path):
    from DeepMedLib.SelfTestData import writeSyntheticDataset

    manifest = writeSyntheticDataset(tmp_path / "boxes")
    model, jobFile = tmp_path / "local-models" / "boxes", tmp_path / "job.json"
    model.parent.mkdir()
    command = [sys.executable, "-m", "deepmed", "remote", "run", *sshServer.host_options(), "--job-file", jobFile,
               "--", "train", "--dataset", manifest, "--out", model, "--epochs", "3", "--device", "cpu",
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
    process.wait(60)
    rest, stderr = process.stdout.read(), process.stderr.read()
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
    assert [e["epoch"] for e in seen] == [0, 1, 2]
    assert events[-1]["model_dir"] == str(model)  # the local path, not the remote job folder
    assert (model / "model.safetensors").is_file() and (model / "model_card.json").is_file()

    # the model segments through the remote worker, on the input's grid (the GUI test compares with a local run)
    first = json.loads(manifest.read_text())["training"][0]["image"]
    image = manifest.parent / (first if isinstance(first, str) else first[0])
    there = tmp_path / "results" / "there.nrrd"
    remote = deepmed("remote", "run", *sshServer.host_options(), "--job-file", tmp_path / "infer.json", "--", "infer",
                     "--model", model, image, "-o", there, "--device", "cpu", "--progress", "jsonl", timeout=300)
    assert remote.returncode == 0, remote.stderr
    assert [json.loads(line)["output"] for line in remote.stdout.splitlines()] == [str(there)]
    fetched, source = (sitk.ReadImage(str(p)) for p in (there, image))
    assert set(np.unique(sitk.GetArrayFromImage(fetched))) <= {0, 1, 2}
    for grid in ("GetSize", "GetOrigin", "GetSpacing", "GetDirection"):
        assert np.allclose(getattr(fetched, grid)(), getattr(source, grid)(), atol=1e-9)  # the input's grid


@pytest.mark.slow
def test_stop_checkpoints_remotely_and_resume_sends_the_model_back(sshServer, tmp_path):
    from DeepMedLib.SelfTestData import writeSyntheticDataset

    manifest = writeSyntheticDataset(tmp_path / "boxes", cases=2)
    model, stopFile = tmp_path / "boxes-model", tmp_path / "run" / "stop"
    stopFile.parent.mkdir()
    train = ["train", "--dataset", manifest, "--out", model, "--device", "cpu", "--progress", "jsonl",
             "--stop-file", stopFile, *[part for setting in TINY for part in ("--set", setting)]]
    command = [sys.executable, "-m", "deepmed", "remote", "run", *sshServer.host_options(), "--job-file",
               tmp_path / "job.json", "--", *train, "--epochs", "200"]
    process = subprocess.Popen([str(c) for c in command], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    for line in process.stdout:
        if json.loads(line)["event"] == "epoch":
            stopFile.write_text("stop\n")   # what the panel's Stop does
            break
    process.wait(120)
    rest, stderr = process.stdout.read(), process.stderr.read()
    stopped = json.loads(rest.splitlines()[-1])
    assert process.returncode == 130 and stopped["event"] == "stopped", stderr
    assert stopped["epoch"] < 199 and (model / "checkpoints" / "last").is_dir()  # brought back
    resumed = deepmed("remote", "run", *sshServer.host_options(), "--job-file", tmp_path / "job2.json", "--",
                      "train", "--dataset", manifest, "--out", model, "--resume", "--epochs", stopped["epoch"] + 2,
                      "--progress", "jsonl", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert events[0]["start_epoch"] >= 1 and events[-1]["event"] == "finished"
    assert (model / "model.safetensors").is_file()


def test_the_plan_sends_inputs_maps_outputs_and_rewrites_a_manifest(tmp_path):
    from deepmed.data.manifest import Dataset
    from deepmed.remote.staging import plan
    from DeepMedLib.SelfTestData import writeSyntheticDataset

    manifest = writeSyntheticDataset(tmp_path / "boxes", cases=2)
    config = tmp_path / "config.json"
    config.write_text("{}")
    staged = plan(["train", "--dataset", str(manifest), "--out", str(tmp_path / "model"), "--config", str(config),
                   "--stop-file", str(tmp_path / "stop"), "--device", "cpu"], tmp_path / "stage")
    assert staged.arguments == ["train", "--dataset", "in/2_dataset/dataset.json", "--out", "out/4_model", "--config",
                                "in/6_config.json", "--stop-file", "stop", "--device", "cpu"]
    assert staged.outputs == [("out/4_model", str(tmp_path / "model"))] and staged.stop_file == str(tmp_path / "stop")
    assert not (tmp_path / "stage" / "out" / "4_model").exists()  # a new output is not sent
    sent = tmp_path / "stage" / staged.arguments[2]
    entries = json.loads(sent.read_text())["training"]
    original = Dataset.load(manifest)
    for entry, source in zip(entries, original.training, strict=True):
        image, label = sent.parent / entry["image"][0], sent.parent / entry["label"]
        assert entry["id"] == source.id and not Path(entry["image"][0]).is_absolute()  # inside the job folder
        assert image.is_symlink() and image.resolve() == source.images[0].resolve()
        assert label.is_symlink() and label.resolve() == source.label.resolve()


@pytest.mark.slow
def test_cancel_ends_the_detached_remote_worker(sshServer, tmp_path):
    from DeepMedLib.SelfTestData import writeSyntheticDataset

    manifest = writeSyntheticDataset(tmp_path / "boxes", cases=2)
    jobFile = tmp_path / "job.json"
    started = deepmed("remote", "run", *sshServer.host_options(), "--job-file", jobFile, "--detach", "--", "train",
                      "--dataset", manifest, "--out", tmp_path / "model", "--epochs", "500", "--device", "cpu",
                      "--progress", "jsonl", *[part for setting in TINY for part in ("--set", setting)], timeout=120)
    assert started.returncode == 0 and "deepmed remote attach" in started.stdout, started.stderr
    folder = Path(json.loads(jobFile.read_text())["folder"])
    deadline = time.time() + 120
    while not (folder / "progress.jsonl").exists() or b"iteration" not in (folder / "progress.jsonl").read_bytes():
        assert not (folder / "exit_code").exists(), (folder / "stderr.log").read_text()
        assert time.time() < deadline, "the remote training did not start"
        time.sleep(0.2)
    assert deepmed("remote", "cancel", jobFile, timeout=60).stdout.strip() == "cancelled"
    attached = deepmed("remote", "attach", jobFile, timeout=60)
    assert attached.returncode != 0 and (folder / "exit_code").read_text() == str(-signal.SIGKILL)
    assert deepmed("remote", "cancel", jobFile, timeout=60).stdout.strip() == "already ended"
