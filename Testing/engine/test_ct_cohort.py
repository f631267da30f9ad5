"""The CT-like cohort of the accuracy-per-minute benchmark: exact labels, anisotropic grid, three classes."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from deepmed.phantoms.ct_cohort import CT_LABELS, make_ct_case, write_ct_cohort


def test_ct_case_is_anisotropic_with_three_classes_in_hounsfield_units():
    image, label = make_ct_case(3)
    spacing = image.GetSpacing()
    assert spacing[0] == spacing[1] < 1.0 and spacing[2] >= 2.0
    assert label.GetSpacing() == spacing and label.GetOrigin() == image.GetOrigin()
    hu, labels = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)
    counts = {value: int((labels == value).sum()) for value in CT_LABELS.values()}
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 3}
    assert counts[2] < 0.05 * counts[1] and counts[3] < 0.05 * counts[1]  # small lesion, thin vessel
    assert hu.min() < -900 and hu.max() > 300  # air and bone
    organ, lesion, vessel = (float(np.median(hu[labels == v])) for v in (1, 2, 3))
    assert 5 < organ - lesion < 30  # low contrast
    assert vessel > organ + 60


def test_ct_labels_are_exact_and_cases_reproducible(tmp_path):
    manifest = write_ct_cohort(tmp_path, n_cases=2, seed=0, n_test=1)
    data = json.loads(manifest.read_text())
    assert data["channel_names"] == {"0": "CT"} and data["labels"] == CT_LABELS
    assert len(data["training"]) == 2 and len(data["test"]) == 1
    label = sitk.ReadImage(str(tmp_path / data["training"][1]["label"]))
    again = make_ct_case(1)[1]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(again))
    assert label.GetPixelID() == sitk.sitkUInt8  # label values written as they are, never interpolated
    test = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / data["test"][0]["label"])))
    assert not np.array_equal(test.shape, sitk.GetArrayFromImage(again).shape) or not np.array_equal(
        test, sitk.GetArrayFromImage(again))  # held-out cases come from other seeds
