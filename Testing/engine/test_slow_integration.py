"""Slow integration tests (a minute or two on CPU), run by default: the demo and a real-image regression."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from deepmed.evaluation import regression_metrics
from deepmed.inference.predictor import Predictor
from deepmed.io import grid_differences
from deepmed.training.driver import train


@pytest.mark.slow
def test_demo_reaches_meaningful_held_out_dice(tmp_path, shared_data):
    from deepmed.applications.demos.segmentation import run_demo

    summary = run_demo(tmp_path / "demo", progress="none", log=lambda m: None)
    assert summary["mean_dice"] >= 0.85
    for name in ("metrics.csv", "curves.png", "overlay.png", "model/model_card.json", "real_scan_segmentation.nii.gz"):
        assert (tmp_path / "demo" / name).is_file(), name
    header = (tmp_path / "demo" / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("case,label,name,dice,jaccard")
    real = sitk.ReadImage(str(shared_data / "pyradiomics" / "brain1_image.nrrd"))
    assert grid_differences(sitk.ReadImage(str(summary["real_output"])), real) == []
    # the demo model as a portable package: exported, imported into an empty library, same output
    from deepmed.zoo.package import export_package, import_package

    package = export_package(tmp_path / "demo" / "model", tmp_path / "demo-model.zip", licence="Apache-2.0",
                             model_id="demo-organ-lesion")
    installed = import_package(package, library=tmp_path / "empty-library")
    original = Predictor(tmp_path / "demo" / "model", "cpu").predict(real).output
    imported = Predictor(installed.path, "cpu").predict(real).output
    np.testing.assert_array_equal(sitk.GetArrayFromImage(imported), sitk.GetArrayFromImage(original))


def _degrade(image: sitk.Image, seed: int) -> sitk.Image:
    """The regression input: the real scan blurred and with noise (target: the clean scan)."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    rng = np.random.default_rng(seed)
    blurred = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), 1.5))
    noisy = blurred + rng.normal(0, 0.1 * array.std(), array.shape).astype(np.float32)
    out = sitk.GetImageFromArray(noisy)
    out.CopyInformation(image)
    return out


@pytest.mark.slow
def test_regression_on_real_ct_beats_the_mean(tmp_path, shared_data):
    """Restore real CT (blur + noise -> clean, in HU): train on the small abdominal CT, test on the
    CT DICOM series (another scan, another grid)."""
    from deepmed.io import read_image

    data = tmp_path / "data"
    data.mkdir()
    scans = {"train": shared_data / "totalsegmentator" / "example_ct_sm.nii.gz",
             "test": shared_data / "totalsegmentator" / "example_ct_dicom"}
    entries = []
    for (name, path), seed in zip(scans.items(), (0, 1)):
        clean = sitk.Cast(read_image(path), sitk.sitkFloat32)
        sitk.WriteImage(_degrade(clean, seed), str(data / f"{name}_in.nii.gz"))
        sitk.WriteImage(clean, str(data / f"{name}_clean.nii.gz"))
        entries.append({"id": name, "image": f"{name}_in.nii.gz", "label": f"{name}_clean.nii.gz"})
    (data / "dataset.json").write_text(json.dumps({"name": "restore", "channel_names": {"0": "CT"}, "labels": {},
                                                   "training": entries[:1], "test": entries[1:]}))
    model_dir = train(data / "dataset.json", tmp_path / "model", app="regression", progress="none", overrides=[
        "data.spacing=[3, 3, 3]", "data.patch_size=[48, 48, 16]", "network.args.channels=[16,32,64]",
        "network.args.strides=[2,2]", "training.epochs=10", "training.iterations_per_epoch=10",
        "training.val_fraction=0", "data.samples_per_case=4", "optimizer.lr=0.003", "loss.name=l1",
        "training.device=cpu", "augmentation.rotate=false", "augmentation.scale=false"])
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["inputs"][0]["normalization"] == "ct"
    prediction = Predictor(model_dir, "cpu").predict(data / "test_in.nii.gz").output
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "test_clean.nii.gz")))
    model_mae = regression_metrics(reference, sitk.GetArrayFromImage(prediction))["mae"]
    mean_mae = float(np.mean(np.abs(reference - reference.mean())))
    assert model_mae < 0.5 * mean_mae, (model_mae, mean_mae)
