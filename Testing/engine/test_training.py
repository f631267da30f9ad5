"""Training and inference end to end on tiny data: both applications, model directory, resume, progress."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import make_image
from naming import names, naming
from safetensors.torch import load_file

from deepmed.errors import DeepMedError, DeepMedInterrupted
from deepmed.inference.predictor import Predictor
from deepmed.io import grid_differences
from deepmed.training.driver import train

TINY = ["data.patch_size=[16,16,16]", "network.args.channels=[8,16,32]", "network.args.strides=[2,2]",
        "training.iterations_per_epoch=2", "training.val_every=1", "training.device=cpu"]


def write_tiny_dataset(folder, n=4, regression=False, held_out=()):
    """Bright boxes in noise (segmentation) or a smooth transform of the image (regression); the cases
    ``held_out`` (indices) are written but left out of the manifest, for scoring on unseen data."""
    folder.mkdir(exist_ok=True)
    entries = []
    for i in range(n):
        rng = np.random.default_rng(i)
        label = np.zeros((18, 22, 26), np.uint8)
        label[4:13, 5 + i:15 + i, 6:18] = 1
        label[8:11, 8 + i:11 + i, 9:12] = 2
        image = rng.normal(0, 0.4, label.shape).astype(np.float32) + 1.5 * (label > 0) - 0.8 * (label == 2)
        img = make_image(array=image, spacing=(1.1, 0.9, 1.6))
        sitk.WriteImage(img, str(folder / f"c{i}.nii.gz"))
        if regression:
            target = sitk.GetImageFromArray((2.0 * image + 5.0).astype(np.float32))
        else:
            target = sitk.GetImageFromArray(label)
        target.CopyInformation(img)
        sitk.WriteImage(target, str(folder / f"c{i}_target.nii.gz"))
        if i not in held_out:
            entries.append({"id": f"c{i}", "image": f"c{i}.nii.gz", "label": f"c{i}_target.nii.gz"})
    manifest = {"name": "tiny", "channel_names": {"0": "MR"}, "training": entries,
                "labels": {} if regression else {"background": 0, "box": 1, "core": 2}}
    (folder / "dataset.json").write_text(json.dumps(manifest))
    return folder / "dataset.json"


@pytest.fixture(scope="module")
def trained_segmentation(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    manifest = write_tiny_dataset(root / "data")
    events = []
    model_dir = train(manifest, root / "model", overrides=TINY + ["training.epochs=3"], progress=events.append)
    return manifest, model_dir, events


def test_segmentation_model_directory(trained_segmentation):
    _, model_dir, events = trained_segmentation
    names = {p.name for p in model_dir.iterdir()}
    assert {"model_card.json", "config.yaml", "model.safetensors", "metrics.csv", "curves.png", "checkpoints"} <= names
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["application"] == "segmentation"
    assert [entry["name"] for entry in card["labels"]] == ["background", "box", "core"]
    assert all(len(entry["color"]) == 3 for entry in card["labels"])
    assert card["inputs"][0]["name"] == "MR" and card["inputs"][0]["normalization"] == "zscore_foreground"
    assert card["spacing"] == pytest.approx([1.1, 0.9, 1.6])
    assert card["patch_size"] == [16, 16, 16]
    assert card["network"]["name"] == "unet" and card["network"]["args"]["out_channels"] == 3
    assert card["training"]["epochs_completed"] == 3 and card["validation"]["key_metric"] == "mean_dice"
    assert len((model_dir / "metrics.csv").read_text().strip().splitlines()) == 4
    weights = load_file(str(model_dir / "model.safetensors"))
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    state = torch.load(model_dir / "checkpoints" / "last" / "state.pt", weights_only=True)
    assert state["trainer"]["epoch"] == 3
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("iteration") == 6 and kinds.count("epoch") == 3 and kinds.count("validation") == 3


def test_segmentation_learns_and_writes_on_input_grid(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", n=5, held_out={2})  # c2: never seen in training
    model_dir = train(manifest, tmp_path / "model", overrides=TINY + ["training.epochs=25", "optimizer.lr=0.01",
                                                                    "training.val_every=25"], progress="none")
    assert "c2" not in (tmp_path / "data" / "dataset.json").read_text()
    image = sitk.ReadImage(str(tmp_path / "data" / "c2.nii.gz"))
    output = Predictor(model_dir, "cpu").predict(image).output
    assert grid_differences(output, image) == []
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "data" / "c2_target.nii.gz")))
    predicted = sitk.GetArrayFromImage(output)
    dice = 2 * np.sum((predicted > 0) & (reference > 0)) / (np.sum(predicted > 0) + np.sum(reference > 0))
    assert dice > 0.9  # 0.99 measured (CPU, seeded)


def test_regression_end_to_end(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", regression=True)
    model_dir = train(manifest, tmp_path / "model", app="regression", overrides=TINY + ["training.epochs=2"],
                      progress="none")
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["application"] == "regression" and card["labels"] == []
    assert card["target"]["statistics"]["target_mean"] == pytest.approx(5.0 + 2.0 * 0.4, abs=0.6)
    image = sitk.ReadImage(str(tmp_path / "data" / "c0.nii.gz"))
    output = Predictor(model_dir, "cpu").predict(image).output
    assert output.GetPixelID() == sitk.sitkFloat32
    assert grid_differences(output, image) == []
    with pytest.raises(DeepMedError, match=naming("regression", "segmentation")):
        Predictor(model_dir, "cpu", expected_app="segmentation")


def _final_weights(model_dir):
    return load_file(str(model_dir / "checkpoints" / "last" / "weights.safetensors"))


def test_resume_reaches_the_same_weights(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data")
    settings = TINY + ["augmentation.probability=0.5", "training.val_every=2"]
    straight = train(manifest, tmp_path / "straight", overrides=settings + ["training.epochs=4"], progress="none")

    def stop_mid_epoch(event):
        if event["event"] == "iteration" and event["epoch"] == 2 and event["iteration"] == 0:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(DeepMedInterrupted, match=naming("epoch 3", "iteration 1")):
        train(manifest, tmp_path / "resumed", overrides=settings + ["training.epochs=4"], progress=stop_mid_epoch)
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "last" / "state.pt", weights_only=True)
    assert (state["trainer"]["epoch"], state["trainer"]["iteration"]) == (2, 1)
    train(manifest, tmp_path / "resumed", resume=True, progress="none")
    a, b = _final_weights(straight), _final_weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


AWKWARD = {
    "oblique": dict(direction=(0.8660254, -0.5, 0.0, 0.5, 0.8660254, 0.0, 0.0, 0.0, 1.0)),
    "flipped": dict(direction=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)),
    "left_handed": dict(direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)),
    "permuted": dict(direction=(0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)),
    "anisotropic": dict(spacing=(0.4, 0.45, 5.0), shape_zyx=(5, 40, 44)),
    "smaller_than_patch": dict(shape_zyx=(4, 6, 5)),
}


@pytest.mark.parametrize("kind", sorted(AWKWARD))
def test_output_on_exact_input_grid_for_awkward_geometry(trained_segmentation, kind, tmp_path):
    _, model_dir, _ = trained_segmentation
    options = {"shape_zyx": (14, 15, 17), **AWKWARD[kind]}
    image = make_image(seed=3, **options)
    path = tmp_path / "in.nrrd"
    sitk.WriteImage(image, str(path))
    from deepmed.cli.main import main

    assert main(["infer", "--model", str(model_dir), str(path), "-o", str(tmp_path / "out.nii.gz"),
                 "--device", "cpu", "--progress", "none"]) == 0
    output = sitk.ReadImage(str(tmp_path / "out.nii.gz"))
    assert output.GetSize() == image.GetSize()
    np.testing.assert_allclose(output.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(output.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(output.GetDirection(), image.GetDirection(), atol=1e-5)
    assert output.GetPixelID() == sitk.sitkUInt8


def test_prediction_follows_the_anatomy_not_the_array_order(trained_segmentation):
    """The same voxels stored with permuted/flipped axes give the same labels at the same world points."""
    manifest, model_dir, _ = trained_segmentation
    image = sitk.ReadImage(str(manifest.parent / "c2.nii.gz"))
    flipped = sitk.Flip(image, [True, False, True])
    permuted = sitk.PermuteAxes(flipped, [2, 0, 1])
    predictor = Predictor(model_dir, "cpu")
    a = predictor.predict(image).output
    b = predictor.predict(permuted).output
    back = sitk.Resample(b, a, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(a))


def test_bf16_inference_agrees_with_float32(trained_segmentation):
    manifest, model_dir, _ = trained_segmentation
    predictor = Predictor(model_dir, "cpu")
    image = sitk.ReadImage(str(manifest.parent / "c0.nii.gz"))
    full = sitk.GetArrayFromImage(predictor.predict(image, precision="float32").output)
    half = sitk.GetArrayFromImage(predictor.predict(image, precision="bfloat16").output)
    assert np.mean(full == half) > 0.98


def test_probabilities_uncertainty_tta_keep_largest(trained_segmentation):
    manifest, model_dir, _ = trained_segmentation
    image = sitk.ReadImage(str(manifest.parent / "c0.nii.gz"))
    result = Predictor(model_dir, "cpu").predict(image, tta_flips=True, keep_largest=True, probabilities=True)
    assert result.probabilities.GetNumberOfComponentsPerPixel() == 3
    probs = sitk.GetArrayFromImage(result.probabilities)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-4)
    entropy = sitk.GetArrayFromImage(result.uncertainty)
    assert entropy.min() >= 0 and entropy.max() <= 1.0001
    assert grid_differences(result.uncertainty, image) == []


def test_jsonl_protocol_from_the_command_line(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data")
    command = [sys.executable, "-m", "deepmed", "train", "--dataset", str(manifest), "--out", str(tmp_path / "m"),
               "--epochs", "2", "--progress", "jsonl"] + [a for s in TINY for a in ("--set", s)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert {"iteration", "epoch", "validation", "checkpoint"} <= set(kinds)
    iteration = next(e for e in events if e["event"] == "iteration")
    assert {"epoch", "iteration", "iterations_per_epoch", "loss", "lr", "eta_s", "time"} <= set(iteration)
    validation = next(e for e in events if e["event"] == "validation")
    assert "dice_box" in validation["metrics"] and validation["key_metric"] == "mean_dice"
    # an error is reported as an event too, and the exit code is 2 without a traceback
    result = subprocess.run(command[:-len(TINY) * 2], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["event"] == "error"
    assert names(result.stderr, "--resume") and result.stderr.count("\n") == 1
