"""The two-channel MR-like cohort of the accuracy-per-minute benchmark: exact labels, channels that carry
different classes, reproducible cases, held-out cases from other seeds."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from deepmed.phantoms.mr_cohort import MR_CHANNELS, MR_LABELS, make_mr_case, write_mr_cohort


def test_mr_case_has_two_aligned_channels_and_three_classes():
    images, label = make_mr_case(3)
    assert len(images) == len(MR_CHANNELS) == 2
    for image in images:
        assert image.GetSize() == label.GetSize() and image.GetSpacing() == label.GetSpacing()
        assert image.GetOrigin() == label.GetOrigin()
    spacing = label.GetSpacing()
    assert spacing[0] == spacing[1] and spacing[2] < 2 * spacing[0]  # near-isotropic, unlike the CT cohort
    labels = sitk.GetArrayFromImage(label)
    counts = np.bincount(labels.ravel(), minlength=4)
    assert len(counts) == 4 and all(counts[1:] > 0)
    assert 30 < counts[3] < 0.2 * counts[2]  # the lesion is small next to the edema around it


def test_lesion_stands_out_in_t1_and_edema_in_flair():
    images, label = make_mr_case(5)
    t1, flair = (sitk.GetArrayFromImage(image) for image in images)
    labels = sitk.GetArrayFromImage(label)
    brain = (labels == 0) & (flair > 0.5 * np.median(flair[labels == 2]))  # unlabelled tissue, not the air
    median = lambda image, mask: float(np.median(image[mask]))  # noqa: E731
    assert median(t1, labels == 3) > 1.2 * median(t1, labels == 2)     # T1: lesion vs edema, clear
    assert abs(median(flair, labels == 3) / median(flair, labels == 2) - 1) < 0.1  # FLAIR: alike
    assert median(flair, labels == 2) > 1.3 * median(flair, brain)    # FLAIR: edema vs tissue, clear
    assert median(t1, labels == 1) < 0.7 * median(t1, brain)          # ventricles dark


def test_mr_labels_are_exact_and_cases_reproducible(tmp_path):
    manifest = write_mr_cohort(tmp_path, n_cases=2, seed=0, n_test=1)
    data = json.loads(manifest.read_text())
    assert data["channel_names"] == {"0": "T1c", "1": "FLAIR"} and data["labels"] == MR_LABELS
    assert len(data["training"]) == 2 and len(data["test"]) == 1
    assert all(len(case["image"]) == 2 for case in data["training"] + data["test"])
    label = sitk.ReadImage(str(tmp_path / data["training"][1]["label"]))
    again_images, again = make_mr_case(1)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(again))
    assert label.GetPixelID() == sitk.sitkUInt8
    flair = sitk.ReadImage(str(tmp_path / data["training"][1]["image"][1]))
    np.testing.assert_allclose(sitk.GetArrayFromImage(flair), sitk.GetArrayFromImage(again_images[1]), rtol=1e-6)
    test = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / data["test"][0]["label"])))
    assert test.shape != labels_shape(again) or not np.array_equal(test, sitk.GetArrayFromImage(again))


def labels_shape(image: sitk.Image) -> tuple:
    return sitk.GetArrayFromImage(image).shape
