"""Super-resolution: the fine grid's geometry, the documented degradation, a tiny model that beats B-spline on
held-out phantoms, the infer CLI on an oblique input, zoo export/import, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from deepmed.applications.demos.super_resolution import phantom
from deepmed.applications.super_resolution import SuperResolutionApplication
from deepmed.errors import DeepMedError
from deepmed.io.geometry import grid_differences
from deepmed.transforms.resolution import (
    FWHM_TO_SIGMA,
    bspline_upsample,
    check_factor,
    coarse_grid,
    crop_to_multiple,
    degradation_sigma_mm,
    degrade,
    fine_grid,
)

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "SlicerDeepMed"), "OMP_NUM_THREADS": "1"}


def _rotation(ax: float, az: float) -> tuple[float, ...]:
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return tuple((rz @ rx).ravel())


def _oblique(size=(10, 8, 6), spacing=(0.7, 1.1, 2.5), origin=(12.5, -30.25, 7.0)) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(_rotation(0.4, -0.7))
    return image


# ---- geometry ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spacing, origin, factor, fine_spacing, fine_origin", [
    ((2.0, 2.0, 2.0), (0.0, 0.0, 0.0), (2, 2, 2), (1.0, 1.0, 1.0), (-0.5, -0.5, -0.5)),
    ((1.0, 1.0, 3.0), (10.0, 20.0, 30.0), (4, 4, 1), (0.25, 0.25, 3.0), (9.625, 19.625, 30.0)),
    ((0.8, 0.8, 6.0), (0.0, 0.0, 0.0), (1, 1, 3), (0.8, 0.8, 2.0), (0.0, 0.0, -2.0)),
])
def test_fine_grid_by_hand(spacing, origin, factor, fine_spacing, fine_origin):
    """Identity direction: the first fine voxel centre lies half a fine voxel inside the input's first edge."""
    image = sitk.Image([4, 5, 6], sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    fine = fine_grid(image, factor)
    assert fine.GetSize() == tuple(n * f for n, f in zip((4, 5, 6), factor))
    assert fine.GetSpacing() == pytest.approx(fine_spacing, abs=1e-12)
    assert fine.GetOrigin() == pytest.approx(fine_origin, abs=1e-12)
    assert fine.GetDirection() == image.GetDirection()


@pytest.mark.parametrize("factor", [(3, 2, 1), (4, 4, 1), (2, 2, 2), (1, 1, 5)])
def test_fine_grid_covers_the_same_box_with_an_oblique_direction(factor):
    """Each fine voxel centre is where the input's continuous index says it is: fine index i <-> input index
    (i + 1/2) / f - 1/2; so both grids share their outer corners and direction, spacing divided exactly."""
    image = _oblique()
    fine = fine_grid(image, factor)
    assert fine.GetDirection() == image.GetDirection()
    assert np.allclose(np.array(fine.GetSpacing()) * factor, image.GetSpacing(), rtol=0, atol=1e-12)
    rng = np.random.default_rng(0)
    corners = [[0, 0, 0], [n - 1 for n in fine.GetSize()]]
    for index in corners + [[int(rng.integers(0, n)) for n in fine.GetSize()] for _ in range(20)]:
        expected = image.TransformContinuousIndexToPhysicalPoint([(i + 0.5) / f - 0.5 for i, f in zip(index, factor)])
        assert fine.TransformIndexToPhysicalPoint(index) == pytest.approx(expected, abs=1e-9)
    # physical extent: the outer edges (half a voxel beyond the outer centres) coincide
    for grid_corner, fine_corner in (([-0.5] * 3, [-0.5] * 3),
                                     ([n - 0.5 for n in image.GetSize()], [n - 0.5 for n in fine.GetSize()])):
        assert fine.TransformContinuousIndexToPhysicalPoint(fine_corner) == \
            pytest.approx(image.TransformContinuousIndexToPhysicalPoint(grid_corner), abs=1e-9)
    assert not grid_differences(coarse_grid(fine, factor), image)  # coarsening undoes refining exactly


def test_bspline_baseline_lies_on_the_fine_grid():
    image = _oblique()
    image = sitk.Add(image, 3.0)
    baseline = bspline_upsample(image, (2, 3, 1))
    assert not grid_differences(baseline, fine_grid(image, (2, 3, 1)))
    assert np.allclose(sitk.GetArrayFromImage(baseline), 3.0, atol=1e-5)  # constants stay constant


# ---- degradation ----------------------------------------------------------------------------------------
def test_degradation_is_the_documented_blur_and_sampling_and_deterministic():
    """An impulse at fine x = 8: blurred by a Gaussian of FWHM one coarse voxel (sigma = 4 * 0.4247 voxels),
    then read at the coarse centres x = 4j + 1.5 (linear between fine voxels)."""
    array = np.zeros((1, 1, 16), np.float32)
    array[0, 0, 8] = 1.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 1.0, 1.0))
    low = degrade(image, [4, 1, 1])
    assert not grid_differences(low, coarse_grid(image, [4, 1, 1]))
    assert low.GetSpacing() == (2.0, 1.0, 1.0)
    sigma = 4 * FWHM_TO_SIGMA
    weights = np.exp(-np.arange(-7, 8) ** 2 / (2 * sigma**2))
    gauss = lambda d: np.exp(-d**2 / (2 * sigma**2)) / weights.sum()  # noqa: E731  (scipy's normalised kernel)
    expected = [(gauss(4 * j + 1 - 8) + gauss(4 * j + 2 - 8)) / 2 for j in range(4)]
    assert sitk.GetArrayFromImage(low)[0, 0] == pytest.approx(expected, abs=1e-4)
    assert degradation_sigma_mm((0.5, 1.0, 1.0), (4, 1, 1)) == pytest.approx([2.0 * FWHM_TO_SIGMA, 0.0, 0.0])
    high = phantom(3, 24)
    first, second = (sitk.GetArrayFromImage(degrade(high, [2, 2, 2])) for _ in range(2))
    assert np.array_equal(first, second)  # no randomness


def test_high_resolution_only_cases_are_cropped_and_simulated():
    high = _oblique(size=(11, 9, 6))
    low, cropped = SuperResolutionApplication.pair(("c", None, high), [2, 2, 3])
    assert cropped.GetSize() == (10, 8, 6) and cropped.GetOrigin() == high.GetOrigin()
    assert not grid_differences(fine_grid(low, [2, 2, 3]), cropped)
    assert crop_to_multiple(cropped, [2, 2, 3]) is cropped


# ---- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [[2, 0, 1], [2, 2], [1.5, 2, 2], [True, 2, 2], "4x", [1, 1, 1], [-2, 2, 1]])
def test_a_factor_that_is_not_positive_integers_is_one_line(factor):
    with pytest.raises(DeepMedError) as caught:
        check_factor(factor, "task.factor")
    message = str(caught.value)
    assert message.startswith("task.factor: ") and "\n" not in message and repr(factor) in message


def _write_pairs(folder: Path, seeds: list[int], factor: list[int], size: int = 24) -> list[dict]:
    """Low-resolution image and high-resolution target files (the paired manifest form)."""
    entries = []
    for seed in seeds:
        high = phantom(seed, size)
        high.SetDirection(_rotation(0.3 * seed, 0.2))
        low = degrade(high, factor)
        sitk.WriteImage(high, str(folder / f"p{seed}_high.nii.gz"))
        sitk.WriteImage(low, str(folder / f"p{seed}_low.nii.gz"))
        entries.append({"image": f"p{seed}_low.nii.gz", "label": f"p{seed}_high.nii.gz"})
    return entries


def test_bad_factor_and_mismatched_pairs_end_the_command_line_with_one_line(tmp_path, capsys):
    from deepmed.cli.main import main

    entries = _write_pairs(tmp_path, [0, 1], [2, 2, 2], size=12)
    manifest = tmp_path / "pairs.json"
    manifest.write_text(json.dumps({"name": "pairs", "training": entries}))
    base = ["train", "--dataset", str(manifest), "--app", "superres", "--progress", "none", "--epochs", "1",
            "--device", "cpu", "--set", "training.iterations_per_epoch=1"]
    assert main(base + ["--out", str(tmp_path / "m1"), "--set", "task.factor=[2,0,1]"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "deepmed: error: task.factor: expected three positive integers [x, y, z] (e.g. [4, 4, 1]), got [2, 0, 1]"]
    assert main(base + ["--out", str(tmp_path / "m2"), "--set", "task.factor=[2,2,3]"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(r"case p\d_high: p\d_high.nii.gz: the high-resolution image is not on the "
                                         r"low-resolution grid refined by \[2, 2, 3\] \(high vs expected\): "
                                         r"size \(12, 12, 12\) vs \(12, 12, 18\)", lines[0]), lines


# ---- a tiny model ------------------------------------------------------------------------------------------
SETTINGS = ["training.epochs=8", "training.iterations_per_epoch=12", "training.batch_size=4", "optimizer.lr=0.003",
            "training.device=cpu", "training.val_every=4", "data.patch_size=[10,10,10]",
            "network.args={features: 16, blocks: 2}", "task.factor=[2,2,2]", "optimizer.weight_decay=0.0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from deepmed.training.driver import train

    folder = tmp_path_factory.mktemp("superres")
    manifest = folder / "pairs.json"
    manifest.write_text(json.dumps({"name": "pairs", "training": _write_pairs(folder, list(range(6)), [2, 2, 2])}))
    events = []
    model = train(manifest, folder / "model", app="superres", overrides=SETTINGS, progress=events.append)
    return folder, model, events


def test_a_tiny_model_beats_bspline_on_held_out_phantoms(trained):
    from deepmed.evaluation.upsampling_metrics import scores_with_baseline
    from deepmed.inference.predictor import Predictor

    folder, model, events = trained
    card = json.loads((model / "model_card.json").read_text())
    assert card["application"] == "superres" and card["output_kind"] == "image"
    assert card["settings"]["factor"] == [2, 2, 2] and card["modes"][0]["output_kind"] == "image"
    assert card["network"]["name"] == "subpixel_sr" and card["network"]["args"]["scale_factor"] == [2, 2, 2]
    validation = [e["metrics"] for e in events if e["event"] == "validation"]
    assert validation and {"psnr", "ssim", "psnr_bspline", "ssim_bspline"} <= set(validation[-1])
    predictor = Predictor(model, "cpu")
    rows = []
    for seed in (40, 41):  # never seen in training
        high = phantom(seed, 24)
        high.SetDirection(_rotation(0.5, -0.3))
        low = degrade(high, [2, 2, 2])
        result = predictor.predict(low)
        assert not grid_differences(result.output, high)  # written on the fine grid = the reference's
        rows.append(scores_with_baseline(high, result.output, low, [2, 2, 2]))
    psnr, baseline = np.mean([r["psnr"] for r in rows]), np.mean([r["psnr_bspline"] for r in rows])
    assert psnr > baseline + 0.3, (psnr, baseline)
    assert np.mean([r["ssim"] for r in rows]) > np.mean([r["ssim_bspline"] for r in rows])


def test_infer_writes_the_fine_grid_volume_and_the_zoo_round_trips(trained, tmp_path, monkeypatch, capsys):
    from deepmed.cli.main import main

    folder, model, _ = trained
    low = phantom(50, 24)
    low.SetSpacing((1.5, 0.9, 2.5))
    low.SetDirection(_rotation(-0.6, 0.9))
    low.SetOrigin((5.0, -7.5, 100.25))
    sitk.WriteImage(low, str(tmp_path / "low.nrrd"))
    out = tmp_path / "fine.nii.gz"
    run = subprocess.run([sys.executable, "-m", "deepmed", "infer", "--model", str(model), str(tmp_path / "low.nrrd"),
                          "-o", str(out), "--progress", "none"], capture_output=True, text=True, env=ENV)
    assert run.returncode == 0, run.stderr
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == (48, 48, 48) and written.GetPixelID() == sitk.sitkFloat32
    assert not grid_differences(written, fine_grid(low, [2, 2, 2]))
    assert written.GetSpacing() == pytest.approx((0.75, 0.45, 1.25), abs=1e-6)
    mean_in, mean_out = sitk.GetArrayFromImage(low).mean(), sitk.GetArrayFromImage(written).mean()
    assert abs(mean_out - mean_in) < 0.05 * abs(mean_in) + 0.02  # intensities in the input's units
    infer = ["infer", "--model", str(model), str(tmp_path / "low.nrrd"), "-o", str(out), "--progress", "none"]
    assert main(infer) == 2 and "already exists" in capsys.readouterr().err  # no overwrite without --force

    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    package = tmp_path / "superres.zip"
    assert main(["zoo", "export", str(model), "-o", str(package), "--licence", "CC-BY-4.0", "--id", "sr-tiny"]) == 0
    assert main(["zoo", "import", str(package)]) == 0
    from_zoo = tmp_path / "from_zoo.nii.gz"
    assert main(["infer", "--model", "sr-tiny", str(tmp_path / "low.nrrd"), "-o", str(from_zoo), "--progress",
                 "none"]) == 0
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(from_zoo))), sitk.GetArrayFromImage(written))


def test_a_two_dimensional_input_is_one_line(trained, tmp_path, capsys):
    from deepmed.cli.main import main

    _, model, _ = trained
    sitk.WriteImage(sitk.Image([8, 8], sitk.sitkFloat32), str(tmp_path / "flat.nii.gz"))
    assert main(["infer", "--model", str(model), str(tmp_path / "flat.nii.gz"), "-o", str(tmp_path / "o.nii.gz"),
                 "--progress", "none"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"deepmed: error: {tmp_path / 'flat.nii.gz'}: expected one 3D image, got 1 channel(s) of 2D"]
    assert not (tmp_path / "o.nii.gz").exists()


def test_evaluate_scores_the_bspline_baseline_beside_the_prediction(tmp_path, capsys):
    """``deepmed evaluate --baseline-from LOW``: B-spline interpolation of the low-resolution input onto the
    reference grid, scored in the same rows (here the prediction *is* that interpolation: equal scores)."""
    from deepmed.cli.main import main

    high = phantom(7, 24)
    high.SetDirection(_rotation(0.2, 0.4))
    low = degrade(high, [2, 2, 1])
    for name, image in (("high", high), ("low", low), ("spline", bspline_upsample(low, [2, 2, 1]))):
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
    assert main(["evaluate", "-r", str(tmp_path / "high.nii.gz"), "-p", str(tmp_path / "spline.nii.gz"),
                 "--baseline-from", str(tmp_path / "low.nii.gz"), "-o", str(tmp_path / "m.csv")]) == 0
    assert "psnr_bspline mean/med/std" in capsys.readouterr().out
    import csv

    row = next(csv.DictReader((tmp_path / "m.csv").open()))
    assert float(row["psnr"]) == pytest.approx(float(row["psnr_bspline"]), abs=1e-3) and 10 < float(row["psnr"]) < 60
    assert float(row["ssim"]) == pytest.approx(float(row["ssim_bspline"]), abs=1e-4)
