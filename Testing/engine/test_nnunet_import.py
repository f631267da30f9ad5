"""nnU-Net v2 models: ``deepmed zoo import NNUNET_RESULT_FOLDER`` checked against nnU-Net itself.

The result folder and the reference predictions are made by nnunetv2's own code (fingerprint, planning,
preprocessing, the trainer's ``save_checkpoint``, ``nnUNetPredictor``) on real shared scans; see
nnunet_reference.py. deepmed must give the same labels on the same grid. Refusals are one line, no traceback.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from naming import names, naming

from deepmed.cli.main import main
from deepmed.errors import DeepMedError


def _result_folder(work: Path) -> Path:
    return Path((work / "result_folder.txt").read_text())


def _agreement(ours: sitk.Image, reference_path: Path) -> float:
    reference = sitk.ReadImage(str(reference_path))
    for what in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(ours, what)() == getattr(reference, what)(), what  # geometry exactly the input's
    return float(np.mean(sitk.GetArrayFromImage(ours) == sitk.GetArrayFromImage(reference)))


@pytest.fixture(scope="module")
def imported(nnunetReference, tmp_path_factory):
    from deepmed.zoo.package import import_package

    library = tmp_path_factory.mktemp("nnunet-library")
    return import_package(_result_folder(nnunetReference), library=library)


@pytest.mark.slow
def test_import_records_the_plans_and_keeps_both_folds(imported):
    card = imported.card.to_dict()  # the document written
    assert card["application"] == "nnunet" and card["folds"] == [0, 1]
    assert [(label["value"], label["name"]) for label in card["labels"]] == [(0, "background"), (1, "brain"),
                                                                             (2, "bright")]
    task = card["task"]
    assert task["spacing"] == [6.5, 1.5625, 1.5625] and task["normalization_schemes"] == ["ZScoreNormalization"]
    assert task["mirror_axes"] == [0, 1, 2] and task["checkpoint"] == "checkpoint_final.pth"
    assert card["network"]["args"]["network_class_name"].endswith("PlainConvUNet")
    assert not list(imported.path.glob("*.pth"))  # weights as safetensors only


@pytest.mark.slow
def test_one_fold_without_mirroring_matches_nnunet_predictor(nnunetReference, imported, tmp_path):
    scan = nnunetReference / "scan_0000.nii.gz"
    out = tmp_path / "seg.nii.gz"
    assert main(["infer", "--model", str(imported.path), str(scan), "-o", str(out), "--device", "cpu", "--folds", "0",
                 "--no-tta", "--progress", "none"]) == 0
    ours = sitk.ReadImage(str(out))
    assert _agreement(ours, nnunetReference / "predictions" / "fold0_nomirror.nii.gz") >= 0.999
    counts = np.bincount(sitk.GetArrayFromImage(ours).ravel(), minlength=3)
    assert (counts >= 100).all(), counts  # not a degenerate network: every label is predicted


@pytest.mark.slow
def test_cli_infer_with_both_folds_and_mirroring_matches_nnunet_predictor(nnunetReference, imported, tmp_path):
    scan = nnunetReference / "scan_0000.nii.gz"
    out = tmp_path / "seg.nii.gz"
    assert main(["infer", "--model", str(imported.path), str(scan), "-o", str(out), "--device", "cpu",
                 "--progress", "none"]) == 0
    assert _agreement(sitk.ReadImage(str(out)), nnunetReference / "predictions" / "folds01_mirror.nii.gz") >= 0.999


@pytest.mark.slow
def test_a_missing_checkpoint_choice_is_one_line(nnunetReference, tmp_path, capsys):
    code = main(["zoo", "--library", str(tmp_path), "import", str(_result_folder(nnunetReference)),
                 "--checkpoint", "best"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "checkpoint_best.pth" in err and "fold_0, fold_1" in err


def test_resampling_is_nnunets_including_the_separate_z_rule():
    """deepmed's resampling against nnunetv2's own functions (in-plane cubic per slice, nearest along z)."""
    default_resampling = pytest.importorskip("nnunetv2.preprocessing.resampling.default_resampling")
    from deepmed.nnunet.resampling import resample

    data = np.random.default_rng(0).normal(size=(2, 7, 20, 18)).astype(np.float32)
    for shape, spacing, target in (((12, 31, 25), [6.5, 2.3, 2.3], [3.5, 1.5, 1.5]),  # separate z, z resampled
                                   ((7, 29, 26), [6.5, 2.3, 2.3], [6.5, 1.6, 1.6]),   # separate z, z kept
                                   ((9, 13, 11), [2.0, 2.0, 2.0], [1.5, 3.0, 3.0])):  # isotropic: 3D cubic
        for order in (3, 1):
            expected = default_resampling.resample_data_or_seg_to_shape(data, shape, spacing, target, False, order,
                                                                        0, None)
            ours = resample(data, shape, spacing, target, order=order, order_z=0, force_separate_z=None)
            assert ours.dtype == expected.dtype and np.array_equal(ours, expected)


def _fake_folder(tmp_path: Path, checkpoint: dict | None, plans: bool = True) -> Path:
    folder = tmp_path / "Dataset999_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0}}))
    if plans:
        (folder / "plans.json").write_text("{}")
    if checkpoint is not None:
        torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return folder


def _checkpoint(**extra) -> dict:
    return {"network_weights": {"w": torch.zeros(2)}, "init_args": {"configuration": "3d_fullres",
                                                                    "device": torch.device("cpu")},
            "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2), **extra}


def test_checkpoint_with_numpy_logs_loads_and_other_pickled_types_are_refused(tmp_path):
    from deepmed.nnunet.checkpoint import load_checkpoint, mirror_axes

    path = tmp_path / "ok.pth"
    torch.save(_checkpoint(logging={"ema_fg_dice": [np.float64(0.5)]}, _best_ema=np.float64(0.5)), path)
    loaded = load_checkpoint(path)
    assert mirror_axes(loaded) == [0, 1, 2] and float(loaded["_best_ema"]) == 0.5
    torch.save(_checkpoint(logging={"epoch_end_timestamps": [datetime.datetime(2024, 1, 1)]}), path)
    with pytest.raises(DeepMedError, match=naming("ok.pth", "datetime.datetime")):
        load_checkpoint(path)


@pytest.mark.parametrize("case", ["missing plans.json", "disallowed pickled type", "no checkpoint"])
def test_bad_result_folders_are_refused_in_one_line(case, tmp_path, capsys):
    if case == "missing plans.json":
        folder, expected = _fake_folder(tmp_path, _checkpoint(), plans=False), ("plans.json",)
    elif case == "disallowed pickled type":
        folder = _fake_folder(tmp_path, _checkpoint(logging={"t": datetime.datetime(2024, 1, 1)}))
        expected = ("datetime.datetime",)
    else:
        folder, expected = _fake_folder(tmp_path, None), ("checkpoint_final.pth", "checkpoint_best.pth")
    code = main(["zoo", "--library", str(tmp_path / "library"), "import", str(folder)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err and names(err, *expected), err
    assert not (tmp_path / "library" / "Dataset999_X_3d_fullres").exists()


def test_missing_network_package_says_how_to_install(monkeypatch):
    import sys

    from deepmed.nnunet.network import build_network

    monkeypatch.setitem(sys.modules, "dynamic_network_architectures", None)
    monkeypatch.setitem(sys.modules, "dynamic_network_architectures.architectures", None)
    with pytest.raises(DeepMedError, match=r"pip install 'deepmed\[nnunet\]'"):
        build_network({"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet"})


def test_network_classes_outside_the_allowed_packages_are_refused():
    pytest.importorskip("dynamic_network_architectures")
    from deepmed.nnunet.network import build_network

    with pytest.raises(DeepMedError, match=naming("os.system", "dynamic_network_architectures.architectures")):
        build_network({"network_class_name": "os.system", "arch_kwargs": {}, "input_channels": 1, "num_classes": 2})
    args = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"conv_op": "subprocess.Popen"}, "requires_import": ["conv_op"], "input_channels": 1,
            "num_classes": 2}
    with pytest.raises(DeepMedError, match=naming("subprocess.Popen", "torch.nn")):
        build_network(args)
