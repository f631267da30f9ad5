"""Whole images at a fixed number of voxels (a whole-image network's input and output).

A case is re-oriented to LPS (exactly) and its physical box, outer voxel boundaries included, is sampled with
``size`` voxels per axis (linear). Results go back onto the input's exact grid by resampling, or onto a grid
the model card declares (``output_grid``: size and spacing x, y, z; origin; direction row-major, LPS).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from deepmed.transforms.preprocessing import oriented, resample_onto


def box_grid(image: sitk.Image, size_xyz: Sequence[int]) -> sitk.Image:
    """An empty image covering ``image``'s (LPS-oriented) box with ``size_xyz`` voxels."""
    source = oriented(image)
    old_spacing = np.asarray(source.GetSpacing(), dtype=np.float64)
    size = np.asarray(size_xyz, dtype=np.float64)
    new_spacing = np.asarray(source.GetSize(), dtype=np.float64) * old_spacing / size
    direction = np.asarray(source.GetDirection(), dtype=np.float64).reshape(3, 3)
    grid = sitk.Image([int(n) for n in size_xyz], sitk.sitkUInt8)
    grid.SetSpacing(new_spacing.tolist())
    grid.SetOrigin((np.asarray(source.GetOrigin()) + direction @ ((new_spacing - old_spacing) / 2)).tolist())
    grid.SetDirection(source.GetDirection())
    return grid


def to_fixed_size(channels: list[sitk.Image], size_xyz: Sequence[int]) -> tuple[np.ndarray, sitk.Image]:
    """The channels on their box at ``size_xyz`` voxels: a float32 array (C, z, y, x) and its grid."""
    grid = box_grid(channels[0], size_xyz)
    arrays = [sitk.GetArrayFromImage(resample_onto(channel, grid)) for channel in channels]
    return np.stack(arrays).astype(np.float32), grid


def image_on(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    """A float32 image of ``array`` (z, y, x) on ``grid``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.CopyInformation(grid)
    return image


def median_grid(images: list[sitk.Image], size_xyz: Sequence[int]) -> dict:
    """``output_grid`` (card form) of ``size_xyz`` voxels over the median LPS box of ``images``."""
    centres, extents = [], []
    for image in images:
        grid = box_grid(image, size_xyz)
        spacing = np.asarray(grid.GetSpacing())
        direction = np.asarray(grid.GetDirection()).reshape(3, 3)
        centres.append(np.asarray(grid.GetOrigin()) + direction @ ((np.asarray(size_xyz) - 1) * spacing / 2))
        extents.append(spacing * np.asarray(size_xyz))
    size = np.asarray(size_xyz, dtype=np.float64)
    spacing = np.median(extents, axis=0) / size
    direction = np.asarray(box_grid(images[0], size_xyz).GetDirection(), dtype=np.float64).reshape(3, 3)
    origin = np.median(centres, axis=0) - direction @ ((size - 1) * spacing / 2)
    return {"size": [int(n) for n in size_xyz], "spacing": [round(float(s), 6) for s in spacing],
            "origin": [round(float(o), 6) for o in origin],
            "direction": [round(float(d), 9) for d in direction.reshape(-1)]}


def grid_of(card_grid: dict) -> sitk.Image:
    """An empty image on a card's ``output_grid``."""
    grid = sitk.Image([int(n) for n in card_grid["size"]], sitk.sitkUInt8)
    grid.SetSpacing([float(s) for s in card_grid["spacing"]])
    grid.SetOrigin([float(o) for o in card_grid["origin"]])
    grid.SetDirection([float(d) for d in card_grid["direction"]])
    return grid


def back_onto(array: np.ndarray, grid: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """``array`` on ``grid`` resampled (linear) onto ``reference``'s exact grid."""
    return resample_onto(image_on(array, grid), reference)
