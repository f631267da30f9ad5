"""MONAI Model Zoo bundles: imported as deepmed models, run like native ones, nothing in them executed."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet

from deepmed.errors import DeepMedError
from deepmed.zoo.package import import_package, verify_installed

NETWORK = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [8, 16, 32],
           "strides": [2, 2], "num_res_units": 1, "norm": "batch"}
RANGE = {"a_min": -57, "a_max": 164, "b_min": 0.0, "b_max": 1.0}


def write_bundle(folder: Path, network=None, weights=None) -> Path:
    network = network or NETWORK
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    metadata = {"name": "toy_spleen_ct", "version": "0.2.1", "description": "A toy bundle shaped like spleen_ct",
                "authors": "Test Author", "license": "Apache-2.0", "references": ["A. Author, Toy, 2026"],
                "network_data_format": {
                    "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1,
                                         "spatial_shape": [32, 32, 32]}},
                    "outputs": {"pred": {"num_channels": 3,
                                         "channel_def": {"0": "background", "1": "spleen", "2": "lesion"}}}}}
    inference = {"network_def": network,
                 "preprocessing": {"_target_": "Compose", "transforms": [
                     {"_target_": "LoadImaged", "keys": "image"}, {"_target_": "EnsureChannelFirstd", "keys": "image"},
                     {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
                     {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
                     {"_target_": "ScaleIntensityRanged", "keys": "image", **RANGE, "clip": True}]},
                 "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 1,
                             "overlap": 0.5}}
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata))
    (folder / "configs" / "inference.json").write_text(json.dumps(inference))
    if weights is None:
        torch.manual_seed(0)
        net = UNet(**{k: v for k, v in NETWORK.items() if k != "_target_"})
        for module in net.modules():  # non-trivial batch-norm statistics
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        torch.save(net.state_dict(), folder / "models" / "model.pt")
    else:
        (folder / "models" / "model.pt").write_bytes(weights)
    return folder


def ras_ct(shape_xyz=(40, 36, 30)) -> sitk.Image:
    rng = np.random.default_rng(3)
    array = rng.normal(40, 60, size=shape_xyz[::-1]).astype(np.float32)
    array[8:20, 10:25, 12:30] += 150
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 2.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # axes point to R, A, S: a RAS-stored scan
    image.SetOrigin((30.0, 12.0, -40.0))
    return image


def monai_reference(bundle: Path, image: sitk.Image) -> np.ndarray:
    """What the bundle's own pipeline computes for a scan already at its orientation and spacing."""
    net = UNet(**{k: v for k, v in NETWORK.items() if k != "_target_"})
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    net.eval()
    array_xyz = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # MONAI's (x, y, z) channel-last-free layout
    scaled = np.clip((array_xyz - RANGE["a_min"]) / (RANGE["a_max"] - RANGE["a_min"]), 0, 1).astype(np.float32)
    with torch.no_grad():
        logits = sliding_window_inference(torch.from_numpy(scaled)[None, None], (32, 32, 32), 1, net, overlap=0.5,
                                          mode="constant")
    return logits.argmax(1)[0].numpy().transpose(2, 1, 0)  # back to (z, y, x)


def test_bundle_imports_and_segments_like_the_monai_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    bundle = write_bundle(tmp_path / "toy_spleen_ct")
    installed = import_package(bundle)
    card = installed.card
    assert installed.id == "toy_spleen_ct" and card["version"] == "0.2.1" and card["licence"] == "Apache-2.0"
    assert card["orientation"] == "RAS" and card["array_axes"] == "xyz" and card["spacing"] == [1.5, 1.5, 2.0]
    assert [label["name"] for label in card["labels"]] == ["background", "spleen", "lesion"]
    assert card["inputs"][0]["normalization"] == "scale_range" and card["source"]["format"] == "monai-bundle"
    assert verify_installed(installed) == [] and not list(installed.path.glob("*.pt"))
    image = ras_ct()
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    subprocess.run([sys.executable, "-m", "deepmed", "infer", "--model", "toy_spleen_ct", str(tmp_path / "ct.nii.gz"),
                    "-o", str(tmp_path / "seg.nii.gz"), "--device", "cpu", "--progress", "none"], check=True,
                   env={**os.environ, "DEEPMED_LIBRARY": str(tmp_path / "library")}, timeout=300)
    ours = sitk.ReadImage(str(tmp_path / "seg.nii.gz"))
    expected = monai_reference(bundle, image)
    assert len(np.unique(expected)) > 1  # the comparison is not trivially all background
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), expected)
    assert ours.GetDirection() == image.GetDirection() and ours.GetOrigin() == image.GetOrigin()


def test_bundle_from_a_zip_works_too(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    write_bundle(tmp_path / "src" / "toy_spleen_ct")
    archive = shutil.make_archive(str(tmp_path / "toy_spleen_ct"), "zip", tmp_path / "src")
    assert import_package(Path(archive), model_id="spleen-from-zip").path.name == "spleen-from-zip"


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['DEEPMED_TEST_PICKLE_MARKER']}",))


def test_malicious_bundle_weights_are_refused_unexecuted(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("DEEPMED_TEST_PICKLE_MARKER", str(marker))
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    bundle = write_bundle(tmp_path / "evil", weights=pickle.dumps(Payload()))
    with pytest.raises(DeepMedError, match="refused by the safe loader"):
        import_package(bundle)
    assert not marker.exists()
    assert [p for p in (tmp_path / "library").iterdir()] == []


@pytest.mark.parametrize("network, message", [
    ({**NETWORK, "channels": "$[8, 16, 32]"}, "is a MONAI config expression"),
    ({**NETWORK, "_target_": "mypackage.MyNet"}, "is not one the engine knows"),
    ({**NETWORK, "channels": [8, 16, 64]}, "does not fit the network"),
])
def test_bundles_the_engine_cannot_map_safely_are_refused(network, message, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    with pytest.raises(DeepMedError, match=message):
        import_package(write_bundle(tmp_path / "b", network=network))
