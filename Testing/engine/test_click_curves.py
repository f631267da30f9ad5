"""The number-of-clicks protocol (Dice after k simulated clicks, NoC@85/90), tested with oracle refiners
on small made images with oblique geometry: no trained model needed."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import make_image

from deepmed.errors import DeepMedError
from deepmed.evaluation.click_curves import ClickCurve, ClickCurveResult, clicks_to_reach
from deepmed.evaluation.click_protocol import click_curve, evaluate_click_curves

SHAPE = (12, 20, 24)


def _ball(centre_zyx, radius, shape=SHAPE) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (z - centre_zyx[0]) ** 2 + (y - centre_zyx[1]) ** 2 + (x - centre_zyx[2]) ** 2 <= radius ** 2


def _image():
    return make_image(shape_zyx=SHAPE, spacing=(0.9, 1.1, 2.0))  # oblique direction, non-zero origin


def _patch_oracle(truth: np.ndarray, automatic: np.ndarray, calls: list, radius: int = 2):
    """Starts from ``automatic``; each click copies the truth into a cube around its voxel (found back from
    the physical point with the image's geometry)."""

    def refine(image, clicks, previous, label):
        calls.append((clicks, previous))
        mask = automatic.copy() if previous is None else previous.copy()
        for click in clicks.clicks:
            x, y, z = image.TransformPhysicalPointToIndex(click.point)
            region = (slice(max(z - radius, 0), z + radius + 1), slice(max(y - radius, 0), y + radius + 1),
                      slice(max(x - radius, 0), x + radius + 1))
            mask[region] = truth[region]
        return mask

    return refine


def test_clicks_reach_and_cap():
    assert clicks_to_reach([0.5, 0.86, 0.95], 0.85) == 1
    assert clicks_to_reach([0.5, 0.86, 0.95], 0.90) == 2
    assert clicks_to_reach([0.91, 0.5], 0.90) == 0  # the automatic mask already reaches it
    assert clicks_to_reach([0.5, 0.6, 0.7], 0.90) == 2  # never reached: the cap (N clicks)
    assert clicks_to_reach([0.5, 0.6, 0.95], 0.90, cap=1) == 1  # reached only after the cap
    with pytest.raises(ValueError):
        clicks_to_reach([], 0.9)


def test_protocol_places_clicks_in_the_largest_error_and_in_physical_lps():
    image = _image()
    truth = _ball((6, 10, 12), 5)
    false_positive = _ball((6, 4, 3), 2) & ~truth
    automatic = (truth & ~_ball((6, 10, 15), 3)) | false_positive  # a small miss and a smaller false blob
    calls: list = []
    curve = click_curve(image, truth, "organ", _patch_oracle(truth, automatic, calls), max_clicks=12, case="c1")

    assert len(curve.dice) == 13 and curve.max_clicks == 12
    assert curve.dice[0] == pytest.approx(2 * (truth & automatic).sum() / (truth.sum() + automatic.sum()))
    assert calls[0][0].clicks == () and calls[0][1] is None  # 0 clicks: the automatic mask, no previous
    first = curve.clicks[0]
    assert first.positive and truth[first.index_zyx] and not automatic[first.index_zyx]  # in the missed part
    for placed in curve.clicks:  # the LPS point is the voxel centre of the index, on the oblique grid
        assert image.TransformPhysicalPointToIndex(placed.point_lps) == placed.index_zyx[::-1]
    assert any(not c.positive and false_positive[c.index_zyx] for c in curve.clicks)  # then the false blob
    assert all(b >= a for a, b in zip(curve.dice, curve.dice[1:]))
    assert curve.dice[-1] == 1.0
    # every refinement receives all clicks so far, of this label, in LPS, and the previous mask
    assert [len(c.clicks) for c, _ in calls] == list(range(len(calls)))
    assert all(c.coordinates == "LPS" and all(k.label == "organ" for k in c.clicks) for c, _ in calls)
    assert calls[1][1] is not None and calls[1][1].shape == SHAPE


def test_protocol_stops_clicking_once_the_mask_is_perfect():
    image, truth = _image(), _ball((6, 10, 12), 4)
    calls = []

    def fixes_everything_on_the_first_click(image, clicks, previous, label):
        calls.append(len(clicks.clicks))
        return truth.copy() if clicks.clicks else np.zeros(SHAPE, bool)

    curve = click_curve(image, truth, "lesion", fixes_everything_on_the_first_click, max_clicks=5)
    assert calls == [0, 1]
    assert curve.dice == (0.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert curve.noc(0.9) == 1 and len(curve.seconds) == 2


def test_a_refiner_off_the_image_grid_is_an_error():
    image, truth = _image(), _ball((6, 10, 12), 4)
    with pytest.raises(DeepMedError, match="not on the image grid"):
        click_curve(image, truth, "organ", lambda *args: np.zeros((3, 3, 3), bool), max_clicks=2)


def test_summary_counts_failures_at_the_cap_and_writes_csv_and_json(tmp_path):
    curves = [ClickCurve("a", "lesion", (0.2, 0.5, 0.86, 0.92)), ClickCurve("b", "lesion", (0.1, 0.3, 0.4, 0.5)),
              ClickCurve("a", "organ", (0.95, 0.95, 0.96, 0.97))]
    result = ClickCurveResult(curves, max_clicks=3, report_at=(0, 1, 3, 5), automatic_dice={"lesion": 0.3})
    lesion, organ = result.summary()
    assert lesion.label == "lesion" and lesion.cases == 2
    assert lesion.dice_at == {0: pytest.approx(0.15), 1: pytest.approx(0.4), 3: pytest.approx(0.71)}  # no 5 > cap
    assert lesion.noc == {0.85: pytest.approx((2 + 3) / 2), 0.90: pytest.approx((3 + 3) / 2)}  # b: the cap
    assert lesion.failures == {0.85: 1, 0.90: 1} and lesion.automatic_dice == 0.3
    assert organ.noc == {0.85: 0.0, 0.90: 0.0} and organ.failures == {0.85: 0, 0.90: 0}
    table = result.format_table()
    assert "lesion" in table and "NoC@85" in table and "automatic" in table

    csv_path, json_path = result.write(tmp_path / "clicks.csv", tmp_path / "clicks.json")
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["case"], r["label"], r["noc90"]) for r in rows] == [("a", "lesion", "3"), ("b", "lesion", "3"),
                                                                   ("a", "organ", "0")]
    assert float(rows[0]["dice_2"]) == 0.86
    document = json.loads(json_path.read_text())
    assert document["summary"][0]["noc85_failures"] == 1 and len(document["curves"]) == 3


def test_dataset_protocol_uses_the_held_out_cases_and_skips_absent_structures(tmp_path):
    image = _image()
    entries = {"training": [], "test": []}
    for i, part in enumerate(("training", "test", "test")):
        label = np.zeros(SHAPE, np.uint8)
        label[_ball((6, 10, 12), 5)] = 1
        if i != 2:
            label[_ball((6, 10, 12), 2)] = 2  # case 2 has no lesion
        itk_label = sitk.GetImageFromArray(label)
        itk_label.CopyInformation(image)
        sitk.WriteImage(image, str(tmp_path / f"c{i}.nii.gz"))
        sitk.WriteImage(itk_label, str(tmp_path / f"c{i}_seg.nii.gz"))
        entries[part].append({"id": f"c{i}", "image": [f"c{i}.nii.gz"], "label": f"c{i}_seg.nii.gz"})
    manifest = tmp_path / "dataset.json"
    manifest.write_text(json.dumps({"name": "t", "labels": {"background": 0, "organ": 1, "lesion": 2}, **entries}))
    seen = []

    def oracle(image, clicks, previous, label):  # one click finds the structure's ball
        seen.append(label)
        return _ball((6, 10, 12), 5 if label == "organ" else 2) if clicks.clicks else np.zeros(SHAPE, bool)

    result = evaluate_click_curves(manifest, oracle, ["organ", "lesion"], max_clicks=3)
    assert [(c.case, c.label) for c in result.curves] == [("c1", "organ"), ("c1", "lesion"), ("c2", "organ")]
    assert [c.dice[:2] for c in result.curves] == [(0.0, pytest.approx(0.967, abs=0.01)), (0.0, 1.0), (0.0, 1.0)]
    assert seen.count("lesion") == 2  # 0 clicks, then 1 click makes it perfect: no more clicks
    with pytest.raises(DeepMedError, match="vessel"):
        evaluate_click_curves(manifest, oracle, ["vessel"], max_clicks=3)


@pytest.mark.parametrize("argv, named", [
    (["--clicks-protocol"], "--model"),
    (["--clicks-protocol", "--model", "m", "--max-clicks", "0"], "--max-clicks"),
    (["--clicks-protocol", "--model", "m", "--prediction", "p"], "--prediction"),
    ([], "--prediction"),  # without the protocol, predictions are still needed
])
def test_cli_bad_input_is_one_line_naming_the_option(tmp_path, capsys, argv, named):
    from deepmed.cli.main import EXIT_USER_ERROR, main

    manifest = tmp_path / "dataset.json"
    manifest.write_text(json.dumps({"name": "t", "labels": {"background": 0, "organ": 1}, "training": []}))
    assert main(["evaluate", "--reference", str(manifest), *argv]) == EXIT_USER_ERROR
    error = capsys.readouterr().err.strip()
    assert named in error and len(error.splitlines()) == 1 and "Traceback" not in error
