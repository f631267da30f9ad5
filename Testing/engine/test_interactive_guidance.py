"""Guidance maps (Gaussian blobs in mm) and the region a click computes."""

from __future__ import annotations

import numpy as np
import pytest

from deepmed.transforms.guidance import (
    Region,
    bounding_region,
    gaussian_blobs,
    guidance_channel_names,
    guidance_stack,
    refine_region,
)


def test_blobs_are_round_in_millimetres():
    blobs = gaussian_blobs((21, 21, 21), [(10, 10, 10)], spacing_zyx=(3.0, 1.0, 1.0), sigma_mm=3.0)
    assert blobs[10, 10, 10] == 1.0
    # one voxel in z is 3 mm: the same value as three voxels in x
    assert np.isclose(blobs[11, 10, 10], blobs[10, 10, 13])
    assert np.isclose(blobs[11, 10, 10], np.exp(-0.5))
    assert blobs[0, 0, 0] == 0.0
    two = gaussian_blobs((5, 5, 30), [(2, 2, 3), (2, 2, 25)], (1, 1, 1), 1.0)
    assert two[2, 2, 3] == 1.0 and two[2, 2, 25] == 1.0 and two[2, 2, 14] < 1e-6


def test_guidance_stack_channels():
    previous = np.zeros((4, 5, 6), np.float32)
    previous[1, 1, 1] = 1
    planes = guidance_stack((4, 5, 6), [(1, 2, 3)], [(3, 4, 5)], previous, label_index=2, label_count=3,
                            spacing_zyx=(1, 1, 1), sigma_mm=1.0)
    assert planes.shape == (9, 4, 5, 6)  # positive, negative, previous of each of the 3 labels
    assert planes[3, 1, 2, 3] == 1 and planes[4, 3, 4, 5] == 1 and planes[3, 3, 4, 5] < 0.01
    assert planes[5].sum() == 1
    assert not planes[[0, 1, 2, 6, 7, 8]].any()  # the other labels' channels stay empty
    assert guidance_channel_names(["a", "b"]) == ["positive_clicks_a", "negative_clicks_a", "previous_mask_a",
                                                  "positive_clicks_b", "negative_clicks_b", "previous_mask_b"]
    with pytest.raises(ValueError, match="label_index"):
        guidance_stack((4, 5, 6), [], [], None, label_index=0, label_count=3, spacing_zyx=(1, 1, 1), sigma_mm=1.0)


def test_region_around_clicks_and_previous_box():
    shape = (100, 300, 300)
    whole = refine_region(shape, [], (64, 64, 64), (8, 8, 8))
    assert whole == Region((0, 0, 0), shape)
    region = refine_region(shape, [(50, 150, 290)], (64, 64, 64), (8, 8, 8))
    assert region.size == (64, 64, 64) and region.stop[2] == 300          # clipped to the array
    assert region.start[0] <= 50 < region.stop[0]
    # clicks far apart: the region grows to hold them
    apart = refine_region(shape, [(50, 20, 20), (50, 200, 20)], (64, 64, 64), (8, 8, 8))
    assert apart.start[1] <= 20 and apart.stop[1] > 200
    # the previous mask's box is covered when it fits, ignored when it does not
    near = refine_region(shape, [(50, 150, 150)], (64, 64, 64), (8, 8, 8), also=Region((40, 100, 140), (60, 160, 160)))
    assert near.start[1] <= 100 and near.stop[1] >= 160
    far = refine_region(shape, [(50, 150, 150)], (64, 64, 64), (8, 8, 8), also=Region((0, 0, 0), (100, 300, 300)))
    assert far.size == (64, 64, 64)


def test_bounding_region():
    mask = np.zeros((5, 6, 7), bool)
    assert bounding_region(mask) is None
    mask[1:3, 2, 4:7] = True
    assert bounding_region(mask) == Region((1, 2, 4), (3, 3, 7))
