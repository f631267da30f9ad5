"""The whole image of a case on the network's input grid (case-level applications: one result per case).

The input grid is planned once from the training cases: a box of the median physical extent, sampled at one
isotropic spacing chosen so that the box fits the voxel budget (each side a multiple of 8 voxels). Every case,
in training and at inference, is resampled (linear) onto a grid of that size and spacing, axes along L, P, S,
centred on the centre of the image's own box: the physical scale and the aspect are kept, a larger field of
view is cropped at its borders and a smaller one padded with the image's minimum (background). Intensities
are then normalised per channel as the plan says (z-score of the foreground for MR, CT windowing with the
training set's statistics for CT).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from deepmed.transforms.preprocessing import normalize_image

SIDE_MULTIPLE = 8  # every side a multiple of 8 voxels (the classification networks halve it 3-4 times)
MIN_SIDE = 16


def physical_extent(image: sitk.Image) -> list[float]:
    """Size x spacing (mm) along the axes nearest to L, P, S."""
    spacing = np.asarray(image.GetSpacing()) * np.asarray(image.GetSize())
    direction = np.abs(np.asarray(image.GetDirection()).reshape(3, 3))
    return [float(spacing[int(np.argmax(direction[axis]))]) for axis in range(3)]


def plan_input_grid(extents_mm: Sequence[Sequence[float]], budget_voxels: int) -> tuple[list[float], list[int], str]:
    """(spacing, size, reason) of an isotropic grid covering the median extent within ``budget_voxels``."""
    median = np.median(np.asarray(extents_mm, dtype=np.float64), axis=0)
    spacing = float(np.cbrt(np.prod(median) / budget_voxels))
    size = [max(MIN_SIDE, int(np.round(e / spacing / SIDE_MULTIPLE)) * SIDE_MULTIPLE) for e in median]
    reason = (f"median extent {' x '.join(f'{e:.0f}' for e in median)} mm in {budget_voxels} voxels: "
              f"{' x '.join(map(str, size))} at {spacing:.2f} mm (aspect kept; larger images cropped, smaller padded)")
    return [spacing] * 3, size, reason


def input_grid(image: sitk.Image, spacing_xyz: Sequence[float], size_xyz: Sequence[int]) -> sitk.Image:
    """An empty LPS-aligned grid of ``size_xyz`` voxels at ``spacing_xyz``, centred on ``image``'s box."""
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint(
        [(n - 1) / 2.0 for n in image.GetSize()]))
    spacing, size = np.asarray(spacing_xyz, dtype=np.float64), np.asarray(size_xyz)
    grid = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    grid.SetSpacing(spacing.tolist())
    grid.SetOrigin((centre - (size - 1) / 2.0 * spacing).tolist())
    return grid


def to_input_grid(channels: list[sitk.Image], spacing_xyz: Sequence[float], size_xyz: Sequence[int]) -> np.ndarray:
    """The channels on the input grid as a (C, Z, Y, X) float32 array; outside an image its minimum."""
    grid = input_grid(channels[0], spacing_xyz, size_xyz)
    arrays = []
    for channel in channels:
        background = float(sitk.GetArrayViewFromImage(channel).min())
        resampled = sitk.Resample(channel, grid, sitk.Transform(), sitk.sitkLinear, background, sitk.sitkFloat32)
        arrays.append(sitk.GetArrayFromImage(resampled))
    return np.stack(arrays).astype(np.float32)


def case_input(channels: list[sitk.Image], spacing_xyz, size_xyz, methods: list[str], stats: list) -> np.ndarray:
    """Resampled and normalised: what the network sees, in training and at inference alike."""
    return normalize_image(to_input_grid(channels, spacing_xyz, size_xyz), methods, stats)
