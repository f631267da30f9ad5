"""ONNX export (``deepmed export --format onnx``) and its inference by onnxruntime: the same labels as the torch
path on a real scan, on the input's exact grid; ensembles (every fold) and regressions; a versioned,
schema-checked pipeline.json; one-line refusals of models and files that cannot be exported or read."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from deepmed.cli.main import main
from deepmed.errors import DeepMedError
from deepmed.export.pipeline import PIPELINE, OnnxPipeline
from deepmed.inference.predictor import Predictor
from deepmed.io import grid_differences
from deepmed.model.card import CARD, ModelCard
from deepmed.model.weights import ensemble_weights, save_weights
from deepmed.networks import build_network
from deepmed.workflows.onnx_export import _export_network, export_onnx
from deepmed.workflows.onnx_parity import compare_export

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]
DEMO_ZIP = REPO / "Resources" / "Models" / "demo-organ-lesion-1.0.0.zip"
BREAST = REPO.parent / "shared" / "data" / "pyradiomics" / "breast1_image.nrrd"
PROSTATE = REPO.parent / "shared" / "data" / "pyradiomics" / "prostate_phantom_subvolume.nrrd"
SMALL_UNET = {"spatial_dims": 3, "in_channels": 1, "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1,
              "norm": "instance"}


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_demo")
    with zipfile.ZipFile(DEMO_ZIP) as archive:
        archive.extractall(root / "model")
    result = export_onnx(root / "model", root / "export")
    return root / "model", root / "export", result


def synthetic_model(folder: Path, application: str, folds: tuple[int, ...] = ()) -> Path:
    """A model directory with random weights of a small U-Net (several folds: each its own weights and own
    normalisation statistics), as training writes it."""
    folder.mkdir(parents=True)
    out_channels = 3 if application == "segmentation" else 1
    args = {**SMALL_UNET, "out_channels": out_channels}
    torch.manual_seed(0)
    states = {fold: build_network("unet", args).state_dict() for fold in folds or (None,)}
    save_weights(ensemble_weights(states) if folds else states[None], folder / "model.safetensors")
    document = {"format": "deepmed-model/1", "application": application, "orientation": "LPS",
                "inputs": [{"name": "MR", "normalization": "zscore", "statistics": {"mean": 300.0, "std": 80.0}}],
                "labels": [{"value": v, "name": n} for v, n in ((0, "background"), (1, "gland"), (7, "zone"))]
                if application == "segmentation" else [],
                "spacing": [0.9, 0.9, 2.0], "patch_size": [24, 24, 16], "network": {"name": "unet", "args": args},
                "inference": {"overlap": 0.25, "sw_batch_size": 2, "keep_largest": True}}
    if application == "regression":
        document["target"] = {"statistics": {"target_mean": 5.0, "target_std": 2.0}, "unit": "ms"}
    if folds:
        document["folds"] = list(folds)
        document["fold_inputs"] = {str(f): [{**document["inputs"][0], "statistics": {"mean": 300.0 + 40 * f,
                                                                                      "std": 80.0}}] for f in folds}
    ModelCard.from_dict(document).write(folder)
    return folder


def test_demo_export_gives_the_torch_labels_on_a_real_scan(demo_export, tmp_path):
    model_dir, export_dir, result = demo_export
    network = result.pipeline.networks[0]
    assert network.file == "model.onnx" and network.dynamic_spatial_axes and result.max_abs_difference < 1e-3
    onnx.checker.check_model(str(export_dir / "model.onnx"), full_check=True)
    document = json.loads((export_dir / PIPELINE).read_text())
    assert document["format"] == "deepmed-onnx/1" and document["activation"] == "softmax"
    assert document["patch_size"] == [48, 48, 32] and document["keep_largest"] == [1, 2]
    assert [label["name"] for label in document["labels"]] == ["background", "organ", "lesion"]
    assert document["input_channels"][0]["normalization"] == "zscore_foreground"
    parity = compare_export(model_dir, export_dir, [BREAST])
    assert parity.identical_fraction >= 0.999, parity.summary()
    assert parity.max_abs_logit_difference < 1e-3, parity.summary()
    assert parity.foreground_voxels > 100  # the comparison covers labelled voxels, not background alone
    assert main(["infer", "--model", str(export_dir), str(BREAST), "-o", str(tmp_path / "seg.nrrd"),
                 "--progress", "none"]) == 0
    written, image = sitk.ReadImage(str(tmp_path / "seg.nrrd")), sitk.ReadImage(str(BREAST))
    assert grid_differences(written, image) == []
    expected = Predictor(model_dir, "cpu").predict([BREAST], precision="float32").output
    assert np.mean(sitk.GetArrayFromImage(written) == sitk.GetArrayFromImage(expected)) >= 0.999


@pytest.mark.parametrize("application", ["segmentation", "regression"])
def test_every_fold_is_exported_and_the_ensemble_matches_torch(application, tmp_path, capsys):
    folds = (0, 2) if application == "segmentation" else ()
    model_dir = synthetic_model(tmp_path / "model", application, folds)
    if folds:
        pipeline = export_onnx(model_dir, tmp_path / "export").pipeline
    else:  # the command line, with its own parity check
        assert main(["export", str(model_dir), "-o", str(tmp_path / "export"), "--check", str(PROSTATE)]) == 0
        printed = re.search(r"parity with torch: .* max \|logit difference\| (\S+),", capsys.readouterr().out)
        assert printed and float(printed.group(1)) < 1e-3
        pipeline = OnnxPipeline.read(tmp_path / "export")
    assert [n.file for n in pipeline.networks] == (["fold_0.onnx", "fold_2.onnx"] if folds else ["model.onnx"])
    assert [n.input_channels[0].statistics["mean"] for n in pipeline.networks] == \
        ([300.0, 380.0] if folds else [300.0])
    parity = compare_export(model_dir, tmp_path / "export", [PROSTATE])
    assert parity.max_abs_logit_difference < 1e-3, parity.summary()
    if application == "segmentation":
        assert parity.identical_fraction >= 0.999 and set(pipeline.keep_largest) == {1, 7}
    else:
        assert parity.max_abs_output_difference < 1e-2 and pipeline.activation == "identity"
        assert pipeline.target["statistics"]["target_std"] == 2.0
    if folds:  # one fold of the export is that fold of the model
        one = Predictor(tmp_path / "export", folds=[2]).predict([PROSTATE]).output
        reference = Predictor(model_dir, "cpu", folds=[2]).predict([PROSTATE], precision="float32").output
        assert np.mean(sitk.GetArrayFromImage(one) == sitk.GetArrayFromImage(reference)) >= 0.999


def test_models_that_cannot_export_are_refused_in_one_line(demo_export, tmp_path, capsys):
    model_dir, _, _ = demo_export
    card = json.loads((model_dir / CARD).read_text())
    for name, changes, reason in (("bundle", {"trust_code": True}, "own Python code"),
                                  ("autoencoder", {"application": "autoencoder"}, "'autoencoder' model")):
        folder = tmp_path / name
        shutil.copytree(model_dir, folder)
        (folder / CARD).write_text(json.dumps({**card, **changes}))
        assert main(["export", str(folder), "-o", str(tmp_path / f"{name}_out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(folder) in err[0] and reason in err[0]
        assert not (tmp_path / f"{name}_out").exists()
    assert main(["export", str(model_dir), "-o", str(demo_export[1])]) == 2  # an export is never overwritten
    assert "--force" in capsys.readouterr().err


class _SizeBaked(torch.nn.Module):
    """Traces with the window size as a constant: right at the patch only (dynamic axes must be dropped)."""

    def forward(self, image):
        return image * float(image.shape[-1])


class _Unsupported(torch.nn.Module):
    def forward(self, image):
        return torch.linalg.eigh(image[..., :2, :2])[0]


def test_dynamic_axes_are_checked_and_unsupported_networks_named(tmp_path):
    dynamic, difference = _export_network(_SizeBaked(), 1, [8, 8, 8], tmp_path / "baked.onnx", 17, "baked")
    assert dynamic is False and difference < 1e-5
    with pytest.raises(DeepMedError, match=r"^weird: cannot export the network to ONNX \(.+\)$"):
        _export_network(_Unsupported(), 1, [8, 8, 8], tmp_path / "weird.onnx", 17, "weird")
    assert not (tmp_path / "weird.onnx").exists()


def test_a_bad_pipeline_is_named_with_its_key(demo_export, tmp_path, capsys):
    _, export_dir, _ = demo_export
    image = str(BREAST)
    for name, change, words in (("version", lambda d: d.update(format="deepmed-onnx/9"), ["at format", "onnx/9"]),
                                ("overlap", lambda d: d["sliding_window"].update(overlap=1.5),
                                 ["sliding_window/overlap"]),
                                ("missing", lambda d: d["networks"][0].update(file="gone.onnx"), ["gone.onnx"])):
        folder = tmp_path / name
        shutil.copytree(export_dir, folder)
        document = json.loads((folder / PIPELINE).read_text())
        change(document)
        (folder / PIPELINE).write_text(json.dumps(document))
        assert main(["infer", "--model", str(folder), image, "-o", str(tmp_path / "x.nii.gz"), "--progress",
                     "none"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(folder / PIPELINE) in err[0] and all(w in err[0] for w in words), err
    with pytest.raises(DeepMedError, match="runs on the CPU"):
        Predictor(export_dir, "cuda")
    assert OnnxPipeline.read(export_dir).card().network.args["out_channels"] == 3


def test_a_fold_that_fails_leaves_no_half_export(tmp_path, monkeypatch):
    from deepmed.workflows import onnx_export

    model_dir = synthetic_model(tmp_path / "model", "segmentation", (0, 1))
    real = onnx_export._export_network

    def second_fold_fails(network, channels, patch, path, opset, where):
        if path.name == "fold_1.onnx":
            raise DeepMedError(f"{where}: cannot export the network to ONNX (made to fail)")
        return real(network, channels, patch, path, opset, where)

    monkeypatch.setattr(onnx_export, "_export_network", second_fold_fails)
    with pytest.raises(DeepMedError, match=r"fold_1\.onnx"):
        export_onnx(model_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "args", "dynamic"), [
    ("segresnet", {"init_filters": 8}, True),
    ("basic_unet", {"features": [8, 8, 16, 32, 64, 8]}, True),
    ("unetr", {"hidden_size": 96, "mlp_dim": 192, "num_heads": 4, "feature_size": 8}, False),  # fixed img_size
])
def test_other_voxel_wise_networks_export_with_the_axes_they_allow(name, args, dynamic, tmp_path):
    from deepmed.planning.network import plan_dense_network

    plan = plan_dense_network(name, 1, 3, [32, 32, 32], [1.0, 1.0, 1.0], args)
    got, difference = _export_network(build_network(name, plan.args), 1, [32, 32, 32], tmp_path / "n.onnx", 17, name)
    assert got is dynamic and difference < 1e-4
    onnx.checker.check_model(str(tmp_path / "n.onnx"))
