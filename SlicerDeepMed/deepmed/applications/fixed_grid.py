"""One fixed grid for whole images (a generator's output, a whole-image network's input).

The grid covers the median physical box of the training cases (re-oriented to LPS), centred on their median
centre, with a planned number of voxels per axis. It is stored in the model card as ``output_grid`` (size and
spacing x, y, z; origin; direction row-major) so that inference writes on exactly that grid.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from deepmed.transforms.preprocessing import oriented, resample_onto


def _box(image: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, extent, direction) of ``image``'s voxel box, re-oriented to LPS."""
    source = oriented(image)
    spacing = np.asarray(source.GetSpacing(), dtype=np.float64)
    size = np.asarray(source.GetSize(), dtype=np.float64)
    direction = np.asarray(source.GetDirection(), dtype=np.float64).reshape(3, 3)
    centre = np.asarray(source.GetOrigin()) + direction @ ((size - 1) * spacing / 2)
    return centre, size * spacing, direction


def box_summary(images: list[sitk.Image]) -> dict:
    """The median centre and extent (mm) of ``images``' boxes and the first one's direction (for the plan)."""
    boxes = [_box(image) for image in images]
    return {"centre": np.median([b[0] for b in boxes], axis=0).tolist(),
            "extent": np.median([b[1] for b in boxes], axis=0).tolist(),
            "direction": boxes[0][2].reshape(-1).tolist()}


def plan_grid(box: dict, size_xyz: list[int]) -> dict:
    """The grid (``output_grid`` dict) of ``size_xyz`` voxels over ``box`` (from :func:`box_summary`)."""
    centre, extent = np.asarray(box["centre"]), np.asarray(box["extent"])
    direction = np.asarray(box["direction"], dtype=np.float64).reshape(3, 3)
    size = np.asarray(size_xyz, dtype=np.float64)
    spacing = extent / size
    origin = centre - direction @ ((size - 1) * spacing / 2)
    return {"size": [int(s) for s in size_xyz], "spacing": [round(float(s), 6) for s in spacing],
            "origin": [round(float(o), 6) for o in origin],
            "direction": [round(float(d), 9) for d in direction.reshape(-1)]}


def grid_image(grid: dict, pixel_type=sitk.sitkFloat32) -> sitk.Image:
    """An empty image on ``grid``."""
    image = sitk.Image([int(s) for s in grid["size"]], pixel_type)
    image.SetSpacing([float(s) for s in grid["spacing"]])
    image.SetOrigin([float(o) for o in grid["origin"]])
    image.SetDirection([float(d) for d in grid["direction"]])
    return image


def on_grid(image: sitk.Image, grid: dict) -> np.ndarray:
    """``image`` resampled (linear) onto ``grid`` as a (Z, Y, X) float32 array."""
    return sitk.GetArrayFromImage(resample_onto(image, grid_image(grid))).astype(np.float32)


def array_on_grid(array: np.ndarray, grid: dict) -> sitk.Image:
    """A (Z, Y, X) array as an image on ``grid``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    reference = grid_image(grid)
    image.CopyInformation(reference)
    return image
