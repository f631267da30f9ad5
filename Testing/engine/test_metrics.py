"""Metrics against hand-computed values, MONAI and SimpleITK; empty-mask rules; the evaluate command."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import make_image
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from naming import names
from scipy.ndimage import binary_dilation, binary_erosion

from deepmed.cli.main import main
from deepmed.evaluation import regression_metrics, segmentation_metrics
from deepmed.evaluation.evaluate import evaluate
from deepmed.evaluation.segmentation_metrics import SEGMENTATION_COLUMNS, binary_metrics, image_diagonal_mm


def test_overlap_metrics_by_hand():
    # 1D-like 1x1x6 arrays: ref = [1,1,1,1,0,0], pred = [0,1,1,1,1,1]
    ref = np.array([[[1, 1, 1, 1, 0, 0]]], dtype=bool)
    pred = np.array([[[0, 1, 1, 1, 1, 1]]], dtype=bool)
    m = binary_metrics(ref, pred, spacing=(1.0, 1.0, 2.0))  # tp 3, fp 2, fn 1, tn 0
    assert m["dice"] == pytest.approx(6 / 9)
    assert m["jaccard"] == pytest.approx(3 / 6)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["specificity"] == pytest.approx(0.0)
    assert m["volume_ref_ml"] == pytest.approx(4 * 2 / 1000)
    assert m["volume_pred_ml"] == pytest.approx(5 * 2 / 1000)
    assert m["rel_volume_diff"] == pytest.approx(0.25)


def test_surface_distances_by_hand():
    # two 3x3x3 cubes in a 9x9x9 grid, shifted by 2 voxels along the last axis (spacing 0.5 mm there)
    ref = np.zeros((9, 9, 9), bool)
    pred = np.zeros((9, 9, 9), bool)
    ref[3:6, 3:6, 1:4] = True
    pred[3:6, 3:6, 3:6] = True
    m = binary_metrics(ref, pred, spacing=(1.0, 1.0, 0.5))
    # every surface voxel of a 3-cube except its centre; the farthest are 2 voxels (1 mm) away
    assert m["hd"] == pytest.approx(1.0)
    assert m["hd95"] == pytest.approx(1.0)
    # per cube: 26 surface voxels (the centre erodes away); the shared slab (9) at 0 mm, the middle slab
    # (8, without the centre) at 0.5 mm, the far slab (9) at 1.0 mm
    assert m["assd"] == pytest.approx((9 * 0 + 8 * 0.5 + 9 * 1.0) / 26)


@pytest.mark.parametrize("ref_empty,pred_empty", [(True, True), (True, False), (False, True)])
def test_empty_mask_rules(ref_empty, pred_empty):
    full = np.zeros((4, 5, 6), bool)
    full[1:3, 1:3, 1:3] = True
    ref = np.zeros_like(full) if ref_empty else full
    pred = np.zeros_like(full) if pred_empty else full
    m = binary_metrics(ref, pred, spacing=(2.0, 1.0, 1.0))
    assert all(not math.isnan(v) for v in m.values())
    diagonal = image_diagonal_mm((4, 5, 6), (2.0, 1.0, 1.0))
    if ref_empty and pred_empty:
        assert (m["dice"], m["jaccard"], m["hd"], m["hd95"], m["assd"], m["rel_volume_diff"]) == (1, 1, 0, 0, 0, 0)
    elif ref_empty:
        assert m["dice"] == 0 and m["sensitivity"] == 1 and m["precision"] == 0
        assert m["hd95"] == diagonal and m["rel_volume_diff"] == math.inf
    else:
        assert m["dice"] == 0 and m["sensitivity"] == 0 and m["precision"] == 1
        assert m["hd"] == diagonal and m["rel_volume_diff"] == -1


@pytest.fixture(scope="module")
def real_pair(request):
    """TotalSegmentator's liver (label 5) and a perturbed copy: eroded, with a blob added."""
    from conftest import SHARED_DATA

    label = sitk.ReadImage(str(SHARED_DATA / "totalsegmentator" / "example_seg.nii.gz"))
    array = sitk.GetArrayFromImage(label)
    ref = array == 5
    pred = binary_erosion(ref, iterations=1)
    blob = np.zeros_like(ref)
    blob[12:15, 40:46, 60:70] = True
    pred = pred | blob
    pred[:, :, :45] = binary_dilation(ref, iterations=2)[:, :, :45]
    return label, ref, pred, tuple(reversed(label.GetSpacing()))


def test_distances_match_monai_on_real_label_map(real_pair):
    _, ref, pred, spacing = real_pair
    ours = binary_metrics(ref, pred, spacing)
    y_pred = torch.from_numpy(pred[None, None].astype(np.float32))
    y = torch.from_numpy(ref[None, None].astype(np.float32))
    hd = compute_hausdorff_distance(y_pred, y, spacing=list(spacing)).item()
    hd95 = compute_hausdorff_distance(y_pred, y, percentile=95, spacing=list(spacing)).item()
    assd = compute_average_surface_distance(y_pred, y, symmetric=True, spacing=list(spacing)).item()
    assert ours["hd"] == pytest.approx(hd, rel=1e-5)
    assert ours["hd95"] == pytest.approx(hd95, rel=1e-5)
    assert ours["assd"] == pytest.approx(assd, rel=1e-4)


def test_overlap_matches_simpleitk_on_real_label_map(real_pair):
    label, ref, pred, spacing = real_pair
    ours = binary_metrics(ref, pred, spacing)
    to_image = lambda a: sitk.Cast(sitk.GetImageFromArray(a.astype(np.uint8)), sitk.sitkUInt8)  # noqa: E731
    r, p = to_image(ref), to_image(pred)
    r.CopyInformation(label)
    p.CopyInformation(label)
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(r, p)
    assert ours["dice"] == pytest.approx(overlap.GetDiceCoefficient(), rel=1e-9)
    assert ours["jaccard"] == pytest.approx(overlap.GetJaccardCoefficient(), rel=1e-9)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(r, p)
    # ITK measures between all object voxels, we between surface voxels: the same maximum here.
    assert ours["hd"] == pytest.approx(hausdorff.GetHausdorffDistance(), rel=1e-6)


def test_multilabel_metrics_per_label():
    ref = np.zeros((3, 4, 4), np.uint8)
    pred = np.zeros((3, 4, 4), np.uint8)
    ref[1, 1:3, 1:3] = 1
    pred[1, 1:3, 1:3] = 1
    ref[0, 0, 0] = 2
    pred[2, 3, 3] = 3
    result = segmentation_metrics(ref, pred, (1, 1, 1))
    assert sorted(result) == [1, 2, 3]
    assert result[1]["dice"] == 1 and result[2]["dice"] == 0 and result[3]["dice"] == 0


def test_regression_metrics_by_hand():
    ref = np.zeros((1, 2, 2))
    pred = np.array([[[1.0, -1.0], [2.0, 0.0]]])
    ref[0, 1, 1] = 4.0  # range 4
    m = regression_metrics(ref, pred)
    assert m["mae"] == pytest.approx((1 + 1 + 2 + 4) / 4)
    assert m["me"] == pytest.approx((1 - 1 + 2 - 4) / 4)
    mse = (1 + 1 + 4 + 16) / 4
    assert m["rmse"] == pytest.approx(math.sqrt(mse))
    assert m["psnr"] == pytest.approx(20 * math.log10(4) - 10 * math.log10(mse))
    masked = regression_metrics(ref, pred, mask=np.array([[[True, False], [False, False]]]), data_range=1.0)
    assert masked["mae"] == 1 and masked["me"] == 1 and masked["psnr"] == pytest.approx(0.0)


def test_ssim_behaves():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(12, 16, 16)).cumsum(axis=2)
    assert regression_metrics(ref, ref)["ssim"] == pytest.approx(1.0)
    assert regression_metrics(ref, ref)["psnr"] == math.inf
    slight = regression_metrics(ref, ref + rng.normal(scale=0.1, size=ref.shape))["ssim"]
    strong = regression_metrics(ref, ref + rng.normal(scale=2.0, size=ref.shape))["ssim"]
    assert 1 > slight > strong


def _write_pair(tmp_path, name, ref_array, pred_array, image=None):
    image = image or make_image(shape_zyx=ref_array.shape)
    for folder, array in (("ref", ref_array), ("pred", pred_array)):
        (tmp_path / folder).mkdir(exist_ok=True)
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        sitk.WriteImage(out, str(tmp_path / folder / f"{name}.nii.gz"))


def test_evaluate_command_folders_csv_and_json(tmp_path, capsys):
    ref = np.zeros((6, 7, 8), np.uint8)
    ref[2:4, 2:5, 2:6] = 1
    pred = ref.copy()
    pred[2, 2, 2] = 0
    _write_pair(tmp_path, "c1", ref, pred)
    _write_pair(tmp_path, "c2", ref, np.zeros_like(ref))
    out = tmp_path / "metrics.csv"
    assert main(["evaluate", "-r", str(tmp_path / "ref"), "-p", str(tmp_path / "pred"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dice mean/med/std" in printed and "1 label_1" in printed
    with out.open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == SEGMENTATION_COLUMNS
    assert [r["case"] for r in rows] == ["c1", "c2"]
    assert float(rows[0]["dice"]) == pytest.approx(2 * 23 / 47, rel=1e-5)
    assert float(rows[1]["dice"]) == 0 and rows[1]["rel_volume_diff"] == "-1"
    assert main(["evaluate", "-r", str(tmp_path / "ref"), "-p", str(tmp_path / "pred"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["name"] == "label_1" and data[0]["dice"] == pytest.approx(2 * 23 / 47)


def test_evaluate_manifest_with_label_names(toy_dataset, tmp_path):
    import shutil

    preds = tmp_path / "preds"
    preds.mkdir()
    for i in range(3):
        shutil.copy(toy_dataset.parent / f"case{i}_seg.nii.gz", preds / f"case{i}.nii.gz")
    rows = evaluate(toy_dataset, preds)
    assert len(rows) == 6
    assert {r["name"] for r in rows} == {"a", "b"}
    assert all(r["dice"] == 1 for r in rows)


def test_evaluate_grid_mismatch_needs_resample(tmp_path, capsys):
    ref_image = make_image()
    ref = np.zeros((6, 7, 8), np.uint8)
    ref[1:5, 1:6, 1:7] = 1
    _write_pair(tmp_path, "c", ref, ref, image=ref_image)
    moved = make_image(origin=(-12.5, 40.25, 10.1))  # shifted by one slice (3.1 mm)
    out = sitk.GetImageFromArray(ref)
    out.CopyInformation(moved)
    sitk.WriteImage(out, str(tmp_path / "pred" / "c.nii.gz"))
    assert main(["evaluate", "-r", str(tmp_path / "ref" / "c.nii.gz"), "-p", str(tmp_path / "pred" / "c.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert names(err, "origin", "--resample") and err.count("\n") == 1
    rows = evaluate(tmp_path / "ref" / "c.nii.gz", tmp_path / "pred" / "c.nii.gz", resample=True)
    assert 0.5 < rows[0]["dice"] < 1


def test_evaluate_regression_images(tmp_path):
    ref = np.linspace(0, 100, 6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    _write_pair(tmp_path, "r", ref, ref + 2)
    rows = evaluate(tmp_path / "ref", tmp_path / "pred")
    assert rows[0]["mae"] == pytest.approx(2, rel=1e-5) and rows[0]["me"] == pytest.approx(2, rel=1e-5)
    assert set(rows[0]) == {"case", "mae", "me", "rmse", "psnr", "ssim"}
