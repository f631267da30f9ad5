"""Accept never loses a label: a process killed (SIGKILL) at any moment of ``add_label`` leaves the case with
its old label or its new one, both complete, and a manifest that loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

import deepmed
from deepmed.data import Dataset
from deepmed.data.labels import add_label
from deepmed.data.provenance import LabelProvenance
from deepmed.io.nifti_integrity import nifti_problem

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")]
SHAPE = (96, 160, 160)  # big enough that writing the compressed label takes a noticeable time
ENGINE = os.path.dirname(os.path.dirname(deepmed.__file__))

CHILD = """
import os, signal, sys, time
from deepmed.data.labels import add_label
from deepmed.data.provenance import LabelProvenance
from deepmed.data.provenance import LabelProvenance
manifest, case, label, die_at = sys.argv[1:5]
def on_step(name):
    if name == die_at:
        os.kill(os.getpid(), signal.SIGKILL)
print("ready", flush=True)
started = time.perf_counter()
add_label(manifest, case, label, LabelProvenance.from_model("m@1"), on_step=on_step)
print(f"done {time.perf_counter() - started:.3f}", flush=True)
"""


def _grid(array, spacing=(0.8, 0.8, 2.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((-40.0, 12.5, 3.0))
    return image


@pytest.fixture
def labelled(tmp_path):
    """Case c0 with an old label (a box of 1) and a new label waiting (noise of 1s and 2s: slow to compress)."""
    rng = np.random.default_rng(0)
    sitk.WriteImage(_grid(rng.normal(size=SHAPE).astype(np.float32)), str(tmp_path / "c0.nii"))
    old = np.zeros(SHAPE, np.uint8)
    old[10:40, 20:90, 30:100] = 1
    sitk.WriteImage(_grid(old), str(tmp_path / "c0_seg.nii.gz"))
    new = rng.integers(0, 3, size=SHAPE).astype(np.uint8)
    sitk.WriteImage(_grid(new), str(tmp_path / "new.nrrd"))
    (tmp_path / "dataset.json").write_text(json.dumps({
        "labels": {"background": 0, "a": 1, "b": 2}, "channel_names": {"0": "CT"},
        "training": [{"image": "c0.nii", "label": "c0_seg.nii.gz"}]}))
    return tmp_path / "dataset.json", old, new


def _start(manifest, label, die_at="never"):
    env = {**os.environ, "PYTHONPATH": ENGINE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(manifest), "c0", str(label), die_at],
                             stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "ready"
    return child


def _label_of_c0(manifest, old, new) -> str:
    """'old' or 'new': which complete label the manifest gives c0 (fails on anything else)."""
    case = Dataset.load(manifest).case("c0")
    assert case.label.is_file(), f"dangling label entry {case.label}"
    assert nifti_problem(case.label) is None
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label)))
    if np.array_equal(array, old):
        assert case.provenance is None or case.provenance.current.proposed_by == "m"
        return "old"
    np.testing.assert_array_equal(array, new)
    assert case.provenance.current.proposed_by == "m" and case.provenance.history[-1].label.is_file()
    return "new"


def test_killed_at_each_step_keeps_the_old_or_the_new_label(labelled):
    manifest, old, new = labelled
    original = manifest.read_text()
    for die_at, expected in (("label_written", "old"), ("manifest_written", "new")):
        manifest.write_text(original)
        child = _start(manifest, manifest.parent / "new.nrrd", die_at)
        assert child.wait(timeout=60) == -signal.SIGKILL
        assert _label_of_c0(manifest, old, new) == expected


def test_killed_at_random_moments_never_leaves_a_half_written_label(labelled):
    manifest, old, new = labelled
    original = manifest.read_text()
    child = _start(manifest, manifest.parent / "new.nrrd")
    assert child.wait(timeout=60) == 0
    duration = float(child.stdout.read().split()[-1])
    seen = set()
    for fraction in (0.05, 0.3, 0.55, 0.8, 0.95, 1.1):
        manifest.write_text(original)
        child = _start(manifest, manifest.parent / "new.nrrd")
        time.sleep(duration * fraction)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        seen.add(_label_of_c0(manifest, old, new))
    print(f"one save: {duration:.2f} s; labels after the kills: {sorted(seen)}")
    assert "old" in seen  # some kill landed before the manifest was replaced
    # a save after all the interruptions takes a version no interrupted save wrote, and succeeds
    written = add_label(manifest, "c0", manifest.parent / "new.nrrd", LabelProvenance.from_model("m@2"))
    versions = sorted(p.name for p in (manifest.parent / "labels").glob("c0_label.v*.nii.gz"))
    assert written.name == versions[-1] and _label_of_c0(manifest, old, new) == "new"
