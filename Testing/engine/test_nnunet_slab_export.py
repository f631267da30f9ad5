"""nnU-Net's export, slab by slab: the same numbers and labels as the full-volume resampling, in less memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from deepmed.nnunet import export, slab_resampling
from deepmed.nnunet.export import streams
from deepmed.nnunet.preprocessing import CaseGeometry
from deepmed.nnunet.resampling import resample
from deepmed.nnunet.slab_resampling import resampled_slabs, slabs_supported


def _settings(order: int, regions=None, transpose=(2, 0, 1)) -> dict:
    return {"resampling_probabilities": {"order": order, "order_z": 0, "force_separate_z": None},
            "spacing": [2.0, 1.5, 1.5], "transpose_backward": list(transpose), "label_values": [0, 1, 2, 3],
            "regions_class_order": regions}


GEOMETRY = CaseGeometry([0.7, 0.6, 0.6], (40, 80, 70), [[2, 38], [5, 75], [0, 70]], (36, 70, 70))


def _full_volume(logits: torch.Tensor, settings: dict) -> np.ndarray:
    """The labels as the full-volume path makes them (what nnU-Net's export does)."""
    labels = export.to_segmentation(export._resampled_logits(logits, GEOMETRY, settings),
                                    settings["regions_class_order"])
    full = np.zeros(GEOMETRY.shape_before_cropping, np.uint8)
    full[tuple(slice(a, b) for a, b in GEOMETRY.bbox)] = labels
    return np.ascontiguousarray(full.transpose(settings["transpose_backward"]))


@pytest.mark.parametrize("order", [0, 1, 3])
def test_slabs_are_the_full_resampling_bit_for_bit(order, monkeypatch):
    assert slabs_supported()
    monkeypatch.setattr(slab_resampling, "SLAB_BYTES", 3 * 2 * 40 * 33 * 5)  # 5 rows a slab: uneven last slab
    data = np.random.default_rng(order).normal(scale=3, size=(3, 9, 14, 11)).astype(np.float16)
    shape = (23, 40, 33)
    expected = resample(data, shape, [2.0, 1.5, 1.5], [0.8, 0.5, 0.5], order=order, order_z=0, force_separate_z=None)
    rows = list(resampled_slabs(data, shape, order))
    assert len(rows) == 5 and rows[-1][0] == slice(20, 23)
    ours = np.concatenate([slab for _, slab in rows], axis=1)
    assert ours.dtype == np.float16 and np.array_equal(ours, expected)


def test_lean_resampling_is_nnunets_for_logits_and_images():
    """Upsampled float16 logits (linear) and a downsampled float32 image (cubic), against nnunetv2's own."""
    default_resampling = pytest.importorskip("nnunetv2.preprocessing.resampling.default_resampling")
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=4, size=(3, 6, 11, 9)).astype(np.float16)
    image = rng.normal(scale=300, size=(1, 26, 40, 33)).astype(np.float32)
    for data, shape, order in ((logits, (17, 30, 28), 1), (image, (9, 14, 12), 3)):
        expected = default_resampling.resample_data_or_seg_to_shape(data, shape, [1.5] * 3, [1.0] * 3, False, order,
                                                                    0, None)
        ours = resample(data, shape, [1.5] * 3, [1.0] * 3, order=order, order_z=0, force_separate_z=None)
        slabs = np.concatenate([slab for _, slab in resampled_slabs(data, shape, order)], axis=1)
        assert ours.dtype == expected.dtype == slabs.dtype
        assert np.array_equal(ours, expected) and np.array_equal(slabs, expected)


@pytest.mark.parametrize("regions", [None, [1, 2, 3]])
def test_streamed_labels_equal_the_full_volume_export(regions, monkeypatch):
    monkeypatch.setattr(slab_resampling, "SLAB_BYTES", 20_000)
    channels = 4 if regions is None else 3
    logits = torch.from_numpy(np.random.default_rng(3).normal(size=(channels, 12, 30, 28)).astype(np.float16))
    settings = _settings(1, regions)
    ours = export.export_segmentation(logits, GEOMETRY, settings)
    assert ours.shape == (70, 40, 80) and len(np.unique(ours)) == 4
    assert np.array_equal(ours, _full_volume(logits, settings))


def test_separate_z_and_other_scipy_keep_the_full_volume_path(monkeypatch):
    assert not streams((2, 5, 40, 40), (30, 80, 80), [6.5, 1.5, 1.5], [1.0, 0.7, 0.7], None)  # nnU-Net's separate z
    assert streams((2, 5, 40, 40), (30, 80, 80), [1.5, 1.5, 1.5], [1.0, 0.7, 0.7], None)
    monkeypatch.setattr(slab_resampling, "slabs_supported", lambda: False)
    assert not streams((2, 5, 40, 40), (30, 80, 80), [1.5, 1.5, 1.5], [1.0, 0.7, 0.7], None)
    logits = torch.from_numpy(np.random.default_rng(4).normal(size=(4, 12, 30, 28)).astype(np.float16))
    settings = _settings(1)
    assert np.array_equal(export.export_segmentation(logits, GEOMETRY, settings), _full_volume(logits, settings))


def test_streamed_export_peaks_far_below_the_full_volume(monkeypatch):
    monkeypatch.setattr(slab_resampling, "SLAB_BYTES", 256 * 1024)
    logits = torch.from_numpy(np.random.default_rng(5).normal(size=(4, 12, 30, 28)).astype(np.float16))
    geometry = CaseGeometry([0.5, 0.3, 0.3], (72, 150, 140), [[0, 72], [0, 150], [0, 140]], (72, 150, 140))
    settings = _settings(1, transpose=(0, 1, 2))
    peaks = []
    for stream in (True, False):
        monkeypatch.setattr(export, "streams", lambda *args, stream=stream: stream)
        tracemalloc.start()
        labels = export.export_segmentation(logits, geometry, settings)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert labels.shape == (72, 150, 140)
    assert peaks[0] * 4 < peaks[1], peaks  # 1.5 M voxels: ~30 MB in flight as one volume


def test_first_argmax_is_numpys_argmax_with_ties_and_nan():
    rng = np.random.default_rng(8)
    values = rng.integers(0, 3, size=(5, 6, 7, 8)).astype(np.float16)  # many ties: the first channel must win
    ours = export.first_argmax(values)
    assert ours.dtype == np.uint8 and np.array_equal(ours, values.argmax(0))
    values[3, 2, 2, 2] = np.nan
    assert np.array_equal(export.first_argmax(values), values.argmax(0))


def test_threaded_spline_filter_is_scipys(monkeypatch):
    from scipy import ndimage

    monkeypatch.setattr(slab_resampling, "workers", lambda: 3)  # uneven parts along every axis
    image = np.random.default_rng(9).normal(size=(11, 16, 13))
    expected = ndimage.spline_filter(image, 3, output=np.float64, mode="nearest")
    assert np.array_equal(slab_resampling._spline_filter_in_place(image.copy(), 3), expected)
    shape = (5, 9, 6)
    zoomed = ndimage.zoom(image, np.divide(shape, image.shape), order=3, mode="nearest", grid_mode=True)
    assert np.array_equal(slab_resampling.lean_resize(image, shape, 3), np.clip(zoomed, image.min(), image.max()))
