"""nnU-Net v2's other configurations, checked against nnunetv2 itself: 2d, the 3d_lowres -> 3d_cascade_fullres
cascade, a cross-configuration ensemble (``nnUNetv2_ensemble``) with the post-processing nnU-Net determined
(``postprocessing.json``), and the weights stored once.

The result folders, predictions, ensemble and post-processing are made by nnunetv2's own code in a subprocess
(nnunet_configurations_reference.py); deepmed must give the same labels on the same grid.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from naming import names, naming

from deepmed.cli.main import main
from deepmed.errors import DeepMedError


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    pytest.importorskip("nnunetv2", reason="nnunetv2 (test extra, Python >= 3.10) not installed")
    work = tmp_path_factory.mktemp("nnunet-configurations")
    script = Path(__file__).resolve().parent / "nnunet_configurations_reference.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "nnUNet_def_n_proc": "1"}
    done = subprocess.run([sys.executable, str(script), str(work)], env=env, capture_output=True,
                          encoding="utf-8", errors="replace", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return work


def _folders(work: Path) -> dict[str, Path]:
    return {key: Path(value) for key, value in json.loads((work / "results.json").read_text()).items()}


def _infer(model: Path, scan: Path, out: Path, *extra: str) -> sitk.Image:
    assert main(["infer", "--model", str(model), str(scan), "-o", str(out), "--device", "cpu", "--progress", "none",
                 *extra]) == 0
    return sitk.ReadImage(str(out))


def _agreement(ours: sitk.Image, reference_path: Path) -> float:
    reference = sitk.ReadImage(str(reference_path))
    for what in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(ours, what)() == getattr(reference, what)(), what
    return float(np.mean(sitk.GetArrayFromImage(ours) == sitk.GetArrayFromImage(reference)))


def _import(source: Path, library: Path):
    from deepmed.zoo.package import import_package

    return import_package(source, library=library)


@pytest.mark.slow
def test_2d_configuration_with_mirroring_matches_nnunet_predictor(reference, tmp_path):
    model = _import(_folders(reference)["2d"], tmp_path / "library")
    assert model.card.task["patch_size"] == [96, 96] and model.card.task["mirror_axes"] == [0, 1]
    ours = _infer(model.path, reference / "scan_0000.nii.gz", tmp_path / "seg.nii.gz")
    assert _agreement(ours, reference / "predictions" / "2d.nii.gz") >= 0.999
    assert len(np.unique(sitk.GetArrayFromImage(ours))) == 3  # not a degenerate network


@pytest.mark.slow
def test_cascade_finds_its_lowres_stage_and_matches_nnunet(reference, tmp_path):
    folders = _folders(reference)
    model = _import(folders["3d_cascade_fullres"], tmp_path / "library")
    task = model.card.task
    assert task["configuration"] == "3d_cascade_fullres" and task["previous_stage"]["configuration"] == "3d_lowres"
    assert task["foreground_labels"] == [1, 2] and model.card.network.args["input_channels"] == 3
    scan = reference / "scan_0000.nii.gz"
    ours = _infer(model.path, scan, tmp_path / "cascade.nii.gz", "--no-tta")
    assert _agreement(ours, reference / "predictions" / "cascade" / "scan.nii.gz") >= 0.999
    lowres = _import(folders["3d_lowres"], tmp_path / "library")
    ours = _infer(lowres.path, scan, tmp_path / "lowres.nii.gz", "--no-tta")
    assert _agreement(ours, reference / "predictions" / "3d_lowres" / "scan.nii.gz") >= 0.999


@pytest.mark.slow
def test_ensemble_folder_with_postprocessing_matches_nnunet_ensemble(reference, tmp_path):
    model = _import(_folders(reference)["ensemble"], tmp_path / "library")
    task = model.card.task
    assert [m["configuration"] for m in task["ensemble"]] == ["2d", "3d_cascade_fullres"]
    assert task["postprocessing"] == [{"keep_largest_component_of": [1, 2], "background": 0}]
    assert model.card.folds == (0, 1) and "ensemble" in (model.path / "README.md").read_text()
    ours = _infer(model.path, reference / "scan_0000.nii.gz", tmp_path / "ensemble.nii.gz", "--no-tta")
    assert _agreement(ours, reference / "predictions" / "ensemble_pp.nii.gz") >= 0.999


@pytest.mark.slow
def test_weights_are_stored_once(reference, tmp_path):
    from safetensors.torch import load_file

    model = _import(_folders(reference)["2d"], tmp_path / "library")
    stored = load_file(str(model.path / "model.safetensors"))
    assert stored and not [k for k in stored if ".decoder.encoder." in k]  # the encoder's alias is not stored
    size = sum(t.numel() * t.element_size() for t in stored.values())
    encoder = sum(t.numel() * t.element_size() for k, t in stored.items() if ".encoder." in k)
    assert encoder > 0 and (model.path / "model.safetensors").stat().st_size - size < min(encoder, 64 * 1024)


@pytest.mark.slow
def test_a_cascade_without_its_lowres_folder_is_refused_in_one_line(reference, tmp_path, capsys):
    source = _folders(reference)["3d_cascade_fullres"]
    alone = tmp_path / "Dataset902_Brain" / source.name
    shutil.copytree(source, alone)
    code = main(["zoo", "--library", str(tmp_path / "library"), "import", str(alone)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "'3d_lowres'" in err and "nnUNetTrainer__nnUNetPlans__3d_lowres" in err


def test_segmentation_resampling_is_nnunets():
    default_resampling = pytest.importorskip("nnunetv2.preprocessing.resampling.default_resampling")
    from deepmed.nnunet.resampling import resample

    rng = np.random.default_rng(1)
    seg = rng.integers(0, 3, size=(1, 6, 15, 13)).astype(np.float32)
    seg[0, :, :3] = -1  # outside the non-zero mask, as nnU-Net's cropping marks it
    for shape, spacing, target in (((11, 31, 25), [6.5, 2.3, 2.3], [3.5, 1.5, 1.5]),
                                   ((6, 29, 26), [6.5, 2.3, 2.3], [6.5, 1.6, 1.6]),
                                   ((9, 13, 11), [2.0, 2.0, 2.0], [1.5, 3.0, 3.0])):
        for order_z in (0, 1):
            expected = default_resampling.resample_data_or_seg_to_shape(seg, shape, spacing, target, True, 1,
                                                                        order_z, None)
            ours = resample(seg, shape, spacing, target, order=1, order_z=order_z, force_separate_z=None, is_seg=True)
            assert ours.dtype == expected.dtype and np.array_equal(ours, expected), (shape, order_z)


def test_postprocessing_json_is_applied_as_nnunet_applies_its_pickle(tmp_path):
    pp = pytest.importorskip("nnunetv2.postprocessing.remove_connected_components")
    from deepmed.nnunet.postprocessing import apply_postprocessing, read_postprocessing

    kwargs = [{"labels_or_regions": [1, 2]}, {"labels_or_regions": 2}, {"labels_or_regions": [1, 3]}]
    path = tmp_path / "postprocessing.json"
    path.write_text(json.dumps({"postprocessing_fns": [pp.remove_all_but_largest_component_from_segmentation.__name__]
                                * 3, "postprocessing_kwargs": kwargs}))
    rng = np.random.default_rng(2)
    segmentation = (rng.random((10, 24, 24)) < 0.08).astype(np.uint8) * rng.integers(1, 4, (10, 24, 24)).astype(np.uint8)
    segmentation[2:7, 5:15, 5:15] = 1
    segmentation[3:5, 6:9, 6:9] = 2
    expected = pp.apply_postprocessing(segmentation, [pp.remove_all_but_largest_component_from_segmentation] * 3,
                                       [{"labels_or_regions": k["labels_or_regions"] if not isinstance(
                                           k["labels_or_regions"], list) else tuple(k["labels_or_regions"])}
                                        for k in kwargs])
    ours = apply_postprocessing(segmentation, read_postprocessing(path))
    assert np.array_equal(ours, expected) and not np.array_equal(ours, segmentation)  # it did remove islands
    path.write_text(json.dumps({"postprocessing_fns": ["os.system"], "postprocessing_kwargs": [{}]}))
    with pytest.raises(DeepMedError, match=naming("'os.system'")):
        read_postprocessing(path)


def test_shared_encoder_weights_load_stored_once_or_twice():
    pytest.importorskip("dynamic_network_architectures")
    from deepmed.nnunet.network import inference_network, stored_weights

    args = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": 3, "features_per_stage": [4, 8, 8], "conv_op": "torch.nn.Conv3d",
                            "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                            "n_conv_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
                            "norm_op": "torch.nn.InstanceNorm3d", "norm_op_kwargs": {"affine": True},
                            "nonlin": "torch.nn.LeakyReLU"},
            "requires_import": ["conv_op", "norm_op", "nonlin"], "input_channels": 1, "num_classes": 2}
    torch.manual_seed(0)
    source = inference_network(args)
    once, twice = stored_weights(source), source.state_dict()
    assert len(once) < len(twice) and all(k in twice for k in once)
    x = torch.randn(1, 1, 8, 8, 8)
    expected = source.eval()(x)
    for weights in (once, twice):
        target = inference_network(args).eval()
        target.load_state_dict(weights)
        assert torch.equal(target(x), expected)


def test_an_ensemble_folder_without_its_members_is_refused_in_one_line(tmp_path, capsys):
    folder = (tmp_path / "Dataset902_Brain" / "ensembles" /
              "ensemble___nnUNetTrainer__nnUNetPlans__2d___nnUNetTrainer__nnUNetPlans__3d_fullres___0_1")
    folder.mkdir(parents=True)
    code = main(["zoo", "--library", str(tmp_path / "library"), "import", str(folder)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and names(err, "nnUNetTrainer__nnUNetPlans__2d", "nnUNetTrainer__nnUNetPlans__3d_fullres")
    assert not (tmp_path / "library").exists() or not any((tmp_path / "library").iterdir())
