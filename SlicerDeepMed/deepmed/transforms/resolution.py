"""Grids refined or coarsened by an integer factor per axis, the documented degradation that simulates a
low-resolution image from a high-resolution one, and B-spline interpolation (the baseline of upsampling).

A factor is three positive integers ``[fx, fy, fz]`` along the image's own index axes (the order of
``GetSize()``/``GetSpacing()``), e.g. ``[4, 4, 1]``: four times finer in-plane, same slices.

Grids (direction ``D``, the columns of the direction matrix; all in LPS mm):

* ``fine_grid(image, f)``: size ``n * f``, spacing ``s / f``, same direction and the same physical box
  (outer voxel edges), so the first fine voxel's centre lies half a *fine* voxel inside the input's first
  voxel's edge: ``origin_fine = origin + D @ ((s / f - s) / 2)``.
* ``coarse_grid(image, f)``: the inverse (``n / f``, ``s * f``, ``origin + D @ ((s * f - s) / 2)``);
  ``fine_grid(coarse_grid(h, f), f)`` is ``h``'s grid exactly when ``f`` divides ``h``'s size.

Degradation (``degrade``): Gaussian blur along each axis with a full width at half maximum of one
*coarse* voxel (``sigma = f * s / (2 sqrt(2 ln 2))`` mm; no blur along axes with factor 1), the usual model
of a low-resolution voxel's point-spread function that also prevents aliasing, then linear sampling at the
coarse voxel centres. It is deterministic (no noise, no randomness).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from deepmed.errors import DeepMedError

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))  # 0.4247


def check_factor(value, where: str = "factor") -> list[int]:
    """``value`` as three positive integers [x, y, z], or a one-line DeepMedError (expected vs got)."""
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value)
    if not ok:
        raise DeepMedError(f"{where}: expected three positive integers [x, y, z] (e.g. [4, 4, 1]), got {value!r}")
    if all(int(v) == 1 for v in value):
        raise DeepMedError(f"{where}: at least one axis must be refined (a factor above 1), got {list(value)!r}")
    return [int(v) for v in value]


def _regridded(image: sitk.Image, size: Sequence[int], spacing: np.ndarray) -> sitk.Image:
    """An empty float image with ``size`` and ``spacing`` over ``image``'s physical box and direction."""
    old_spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64) + direction @ ((spacing - old_spacing) / 2)
    grid = sitk.Image([int(n) for n in size], sitk.sitkFloat32)
    grid.SetSpacing([float(s) for s in spacing])
    grid.SetOrigin([float(o) for o in origin])
    grid.SetDirection(image.GetDirection())
    return grid


def fine_grid(image: sitk.Image, factor: Sequence[int]) -> sitk.Image:
    """An empty float image on ``image``'s grid refined by ``factor`` (same box and direction)."""
    factor = np.asarray(factor, dtype=np.int64)
    size = np.asarray(image.GetSize(), dtype=np.int64) * factor
    return _regridded(image, size, np.asarray(image.GetSpacing(), dtype=np.float64) / factor)


def coarse_grid(image: sitk.Image, factor: Sequence[int]) -> sitk.Image:
    """An empty float image on ``image``'s grid coarsened by ``factor`` (``factor`` must divide the size)."""
    factor = np.asarray(factor, dtype=np.int64)
    size = np.asarray(image.GetSize(), dtype=np.int64)
    if np.any(size % factor):
        raise DeepMedError(f"image size {tuple(int(n) for n in size)} is not a multiple of the factor "
                           f"{tuple(int(f) for f in factor)}; crop it first (crop_to_multiple)")
    return _regridded(image, size // factor, np.asarray(image.GetSpacing(), dtype=np.float64) * factor)


def crop_to_multiple(image: sitk.Image, factor: Sequence[int]) -> sitk.Image:
    """``image`` without its last voxels along each axis whose size is not a multiple of ``factor``."""
    size = [int(n) - int(n) % int(f) for n, f in zip(image.GetSize(), factor)]
    if min(size) < 1:
        raise DeepMedError(f"image size {image.GetSize()} is smaller than the factor {tuple(factor)}")
    if list(size) == list(image.GetSize()):
        return image
    return sitk.RegionOfInterest(image, size, [0, 0, 0])


def degradation_sigma_mm(spacing: Sequence[float], factor: Sequence[int]) -> list[float]:
    """Gaussian sigma (mm, per axis) of the degradation: a FWHM of one coarse voxel; 0 where the factor is 1."""
    return [float(f * s * FWHM_TO_SIGMA) if f > 1 else 0.0 for s, f in zip(spacing, factor)]


def degrade(image: sitk.Image, factor: Sequence[int]) -> sitk.Image:
    """The low-resolution image simulated from high-resolution ``image`` (size a multiple of ``factor``):
    Gaussian blur (FWHM = one coarse voxel per refined axis), then linear sampling at the coarse voxel centres.
    Deterministic; the result lies on ``coarse_grid(image, factor)``."""
    factor = check_factor(list(factor))
    grid = coarse_grid(image, factor)
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    sigma_voxels = [f * FWHM_TO_SIGMA if f > 1 else 0.0 for f in factor]
    blurred = gaussian_filter(array, sigma=list(reversed(sigma_voxels)), mode="nearest", truncate=4.0)
    smooth = sitk.GetImageFromArray(blurred.astype(np.float32))
    smooth.CopyInformation(image)
    return sitk.Resample(smooth, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32, True)


def bspline_upsample(image: sitk.Image, factor: Sequence[int]) -> sitk.Image:
    """``image`` on its fine grid by cubic B-spline interpolation (the baseline a trained model must beat);
    outside the outermost voxel centres the nearest voxel's value is used."""
    grid = fine_grid(image, factor)
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkBSpline, 0.0,
                         sitk.sitkFloat32, True)
