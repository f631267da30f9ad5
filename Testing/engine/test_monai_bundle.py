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
from naming import names, naming

from deepmed.errors import DeepMedError
from deepmed.zoo.package import import_package, verify_installed

NETWORK = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [8, 16, 32],
           "strides": [2, 2], "num_res_units": 1, "norm": "batch"}
RANGE = {"a_min": -57, "a_max": 164, "b_min": 0.0, "b_max": 1.0}


POSTPROCESSING = {"_target_": "Compose", "transforms": [
    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
    {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image"},
    {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
    {"_target_": "SaveImaged", "keys": "pred", "output_dtype": "$numpy.float32"}]}


def write_bundle(folder: Path, network=None, weights=None, edit=None) -> Path:
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
                             "overlap": 0.5},
                 "postprocessing": json.loads(json.dumps(POSTPROCESSING))}
    if edit is not None:
        edit(inference)
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata))
    (folder / "configs" / "inference.json").write_text(json.dumps(inference))
    if weights is None:
        torch.manual_seed(0)
        net = build(network if network.get("_target_") in ("UNet", "UNETR", "SwinUNETR") else NETWORK)
        for module in net.modules():  # non-trivial batch-norm statistics
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        torch.save(net.state_dict(), folder / "models" / "model.pt")
    else:
        (folder / "models" / "model.pt").write_bytes(weights)
    return folder


def build(network: dict) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    return ConfigParser({"network_def": network}).get_parsed_content("network_def")


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
    card = installed.card.to_dict()  # the document written
    assert installed.id == "toy_spleen_ct" and card["version"] == "0.2.1" and card["licence"] == "Apache-2.0"
    assert card["orientation"] == "RAS" and card["array_axes"] == "xyz" and card["spacing"] == [1.5, 1.5, 2.0]
    assert [label["name"] for label in card["labels"]] == ["background", "spleen", "lesion"]
    assert card["application"] == "monai_bundle" and card["output_kind"] == "label_map"
    assert card["inputs"][0]["name"] == "CT" and card["source"]["format"] == "monai-bundle"
    assert [step["name"] for step in card["task"]["preprocessing"]] == ["EnsureChannelFirstd", "Orientationd",
                                                                       "Spacingd", "ScaleIntensityRanged"]
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
    with pytest.raises(DeepMedError, match=naming("evil", "model.pt", "weights_only")):
        import_package(bundle)
    assert not marker.exists()
    assert [p for p in (tmp_path / "library").iterdir()] == []


@pytest.mark.parametrize("network, message", [
    ({**NETWORK, "channels": "$numpy.arange(3).tolist()"}, ("network_def#channels", "--trust-code")),
    ({**NETWORK, "_target_": "mypackage.MyNet"}, ("mypackage.MyNet",)),
])
def test_bundles_the_engine_cannot_map_safely_are_refused(network, message, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    with pytest.raises(DeepMedError, match=naming(*message)):
        import_package(write_bundle(tmp_path / "b", network=network))


def test_weights_of_another_shape_are_named_briefly(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    other = pickle_free_weights({**NETWORK, "channels": [8, 16, 64]})
    with pytest.raises(DeepMedError, match=r"models/model.pt does not fit network_def: \d+ of another shape: "
                                           r"model\.\S+ \(\d+, \d+"):
        import_package(write_bundle(tmp_path / "b", weights=other))


def pickle_free_weights(network: dict) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"model": {f"module.{k}": v for k, v in build(network).state_dict().items()}}, buffer)
    return buffer.getvalue()


def test_checkpoint_loader_path_load_dict_and_module_prefix(tmp_path, monkeypatch):
    """Weights where the bundle's CheckpointLoader says, under its load_dict key, DataParallel prefixes off."""
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))

    def loader(config):
        config["bundle_root"] = "/workspace/elsewhere"
        config["checkpoint"] = "$@bundle_root + '/models/' + @weights_name"
        config["weights_name"] = "best_metric_model.pt"
        config["handlers"] = [{"_target_": "CheckpointLoader", "load_path": "@checkpoint",
                               "load_dict": {"model": "@network"}}]

    bundle = write_bundle(tmp_path / "b", weights=b"not weights", edit=loader)
    (bundle / "models" / "best_metric_model.pt").write_bytes(pickle_free_weights(NETWORK))
    assert import_package(bundle).card.network.name == "unet"


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["preprocessing"]["transforms"].append({"_target_": "RandFlipd", "keys": "image"}),
     ("RandFlipd", "preprocessing#transforms#5")),
    (lambda c: c["postprocessing"]["transforms"].insert(0, {"_target_": "Lambdad", "keys": "pred",
                                                            "func": "$lambda x: x.flip(1)"}),
     ("Lambdad", "func")),
    (lambda c: c["postprocessing"]["transforms"].pop(2), ("probabilities", "labels")),
    (lambda c: c["inferer"].update(_target_="mypackage.MyInferer"), ("inferer", "MyInferer")),
])
def test_unknown_steps_are_refused_in_one_line(edit, message, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    with pytest.raises(DeepMedError, match=naming(*message)) as error:
        import_package(write_bundle(tmp_path / "b", edit=edit))
    assert "\n" not in str(error.value)


def test_pure_expressions_are_evaluated_and_set_reaches_every_expression_reading_a_key(tmp_path, monkeypatch,
                                                                                         capsys):
    from deepmed.cli.main import main as deepmed

    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))

    def spacing_branch(config):  # as wholeBody_ct_segmentation chooses its spacing and its weights file
        config["displayable_configs"] = {"highres": False}
        config["preprocessing"]["transforms"][3]["pixdim"] = \
            "$[1.5, 1.5, 2.0] if @displayable_configs#highres else [3.0, 3.0, 3.0]"
        config["modelname"] = "$'model.pt' if @displayable_configs#highres else 'model_lowres.pt'"
        config["handlers"] = [{"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/' + @modelname",
                               "load_dict": {"model": "@network"}}]

    bundle = write_bundle(tmp_path / "b", edit=spacing_branch)
    (bundle / "models" / "model_lowres.pt").write_bytes((bundle / "models" / "model.pt").read_bytes())
    assert deepmed(["zoo", "import", str(bundle)]) == 0
    card = json.loads((tmp_path / "library" / "b" / "model_card.json").read_text())
    assert card["spacing"] == [3.0, 3.0, 3.0]
    (bundle / "models" / "model_lowres.pt").unlink()  # the branch now needs model.pt: --set reaches it
    assert deepmed(["zoo", "import", str(bundle), "--id", "c", "--set", "displayable_configs#highres=true"]) == 0
    card = json.loads((tmp_path / "library" / "c" / "model_card.json").read_text())
    assert card["spacing"] == [1.5, 1.5, 2.0]
    # a key read only by the checkpoint reader counts as used
    (bundle / "models" / "other.pt").write_bytes((bundle / "models" / "model.pt").read_bytes())
    assert deepmed(["zoo", "import", str(bundle), "--id", "d", "--set", "modelname=other.pt"]) == 0
    assert deepmed(["zoo", "import", str(bundle), "--id", "e", "--set", "preprocessing#transforms#3#pixdim=[3, 3, 3]",
                    "--set", "preprocessing#transforms#9#pixdim=1"]) == 2
    assert names(capsys.readouterr().err, "preprocessing#transforms#9#pixdim")


def test_an_impure_expression_is_refused_in_one_line_naming_key_and_flags(tmp_path, monkeypatch, capsys):
    from deepmed.cli.main import main as deepmed

    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))

    def code(config):
        config["preprocessing"]["transforms"][3]["pixdim"] = "$scripts.utils.spacing(@bundle_root)"

    bundle = write_bundle(tmp_path / "b", edit=code)
    assert deepmed(["zoo", "import", str(bundle)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "preprocessing#transforms#3#pixdim" in error
    assert "--set" in error and "--trust-code" in error
    assert deepmed(["zoo", "import", str(bundle), "--set", "preprocessing#transforms#3#pixdim=[3.0, 3.0, 3.0]"]) == 0


@pytest.mark.parametrize("network", [
    {"_target_": "UNETR", "in_channels": 1, "out_channels": 3, "img_size": [32, 32, 32], "feature_size": 8,
     "hidden_size": 96, "mlp_dim": 192, "num_heads": 4},
    pytest.param({"_target_": "SwinUNETR", "in_channels": 1, "out_channels": 3, "feature_size": 12, "img_size": 64},
                 marks=pytest.mark.slow),
])
def test_transformer_networks_import_and_run(network, tmp_path, monkeypatch):
    """UNETR and SwinUNETR (einops) import and segment on the input grid like MONAI's own pipeline."""
    from monai.bundle import ConfigParser
    from monai.data import decollate_batch, list_data_collate

    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    torch.manual_seed(1)
    reference_network = build({k: v for k, v in network.items()
                               if not (k == "img_size" and "Swin" in network["_target_"])})  # gone in MONAI 1.5
    weights = io_bytes(reference_network.state_dict())
    roi = [network["img_size"]] * 3 if isinstance(network["img_size"], int) else network["img_size"]
    bundle = write_bundle(tmp_path / "t", network=network, weights=weights,
                          edit=lambda config: config["inferer"].update(roi_size=roi))
    image = ras_ct()
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    ours = import_package(bundle)
    from deepmed.inference.predictor import Predictor

    result = Predictor(ours.path, "cpu").predict([image]).output
    parser = ConfigParser(json.loads((bundle / "configs" / "inference.json").read_text()))
    reference_network.eval()
    data = parser.get_parsed_content("preprocessing")({"image": str(tmp_path / "ct.nii.gz")})
    batch = list_data_collate([data])
    with torch.no_grad():
        item = decollate_batch({"image": batch["image"],
                                "pred": parser.get_parsed_content("inferer")(batch["image"], reference_network)})[0]
    item = parser.get_parsed_content("postprocessing#transforms#0")(item)
    item = parser.get_parsed_content("postprocessing#transforms#1")(item)
    expected = np.asarray(parser.get_parsed_content("postprocessing#transforms#2")(item)["pred"])[0].T
    assert len(np.unique(expected)) > 1
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), expected)
    assert result.GetOrigin() == image.GetOrigin() and result.GetDirection() == image.GetDirection()


def io_bytes(state: dict) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_transforms_given_as_references_to_lists_read_as_the_lists(tmp_path, monkeypatch):
    """segmentation_template's ``transforms: $@transforms`` and DeepEdit's ``$@a + @b`` joins."""
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))

    def split(config):
        transforms = config["preprocessing"]["transforms"]
        config["loading"], config["intensity"] = transforms[:2], transforms[2:]
        config["preprocessing"]["transforms"] = "$@loading + @intensity"

    plain = import_package(write_bundle(tmp_path / "a")).card.task
    joined = import_package(write_bundle(tmp_path / "b", edit=split)).card.task
    assert joined["preprocessing"] == plain["preprocessing"] and len(plain["preprocessing"]) == 4

    def not_a_list(config):
        config["loading"] = {"_target_": "LoadImaged", "keys": "image"}
        config["preprocessing"]["transforms"] = "$@loading + @loading"

    with pytest.raises(DeepMedError, match=naming("preprocessing#transforms", "lists")):
        import_package(write_bundle(tmp_path / "c", edit=not_a_list))
