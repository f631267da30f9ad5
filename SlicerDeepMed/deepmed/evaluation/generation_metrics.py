"""Measures of generated images: the shape a condition controls, and intensity statistics against real data.

* ``foreground_threshold``: one Otsu threshold over the pooled voxels of the training images (SimpleITK).
* ``shape_properties``: of the largest connected component above that threshold, its equivalent spherical
  radius and its centroid (mm, LPS), from SimpleITK's ``LabelShapeStatisticsImageFilter``.
* ``intensity_statistics``: mean and standard deviation inside and outside the foreground.
* ``histogram_distance``: the Wasserstein-1 distance between two intensity distributions (SciPy), in the
  images' units; divided by the real data's standard deviation it is comparable across data sets.
* ``correlation``: Pearson r of a measured property with the requested condition.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy.stats import pearsonr, wasserstein_distance

SHAPE_KEYS = ("radius", "centre_x", "centre_y", "centre_z")
INTENSITY_KEYS = ("mean_inside", "std_inside", "mean_outside", "std_outside")


def foreground_threshold(arrays: list[np.ndarray]) -> float:
    """Otsu's threshold of all voxels of ``arrays`` together (the data set's foreground/background split)."""
    values = np.concatenate([np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays])
    image = sitk.GetImageFromArray(values.reshape(1, -1))
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.Execute(image)
    return float(otsu.GetThreshold())


def largest_component(image: sitk.Image, threshold: float) -> sitk.Image:
    """The largest connected region above ``threshold`` as a 0/1 image (all zeros when there is none)."""
    mask = sitk.BinaryThreshold(image, lowerThreshold=threshold, upperThreshold=float("inf"), insideValue=1,
                                outsideValue=0)
    return sitk.Cast(sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True) == 1,
                     sitk.sitkUInt8)


def shape_properties(image: sitk.Image, threshold: float) -> dict[str, float]:
    """Equivalent spherical radius and centroid (mm) of the largest foreground region; NaN without one."""
    mask = largest_component(image, threshold)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    if not stats.HasLabel(1):
        return {key: math.nan for key in SHAPE_KEYS}
    x, y, z = stats.GetCentroid(1)
    return {"radius": stats.GetEquivalentSphericalRadius(1), "centre_x": x, "centre_y": y, "centre_z": z}


def intensity_statistics(array: np.ndarray, threshold: float) -> dict[str, float]:
    """Mean and standard deviation of the voxels above (inside) and below (outside) ``threshold``."""
    array = np.asarray(array, dtype=np.float64)
    inside, outside = array[array >= threshold], array[array < threshold]
    pick = lambda values, f: float(f(values)) if values.size else math.nan  # noqa: E731
    return {"mean_inside": pick(inside, np.mean), "std_inside": pick(inside, np.std),
            "mean_outside": pick(outside, np.mean), "std_outside": pick(outside, np.std)}


def histogram_distance(generated: list[np.ndarray], real: list[np.ndarray]) -> float:
    """Wasserstein-1 distance between the pooled voxel values of two sets of images (their units)."""
    pooled = lambda arrays: np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays])  # noqa: E731
    return float(wasserstein_distance(pooled(generated), pooled(real)))


def correlation(measured: list[float], requested: list[float]) -> float:
    """Pearson r; a missing measurement (NaN) or a constant series gives r = 0 (no evidence of control)."""
    measured, requested = np.asarray(measured, dtype=np.float64), np.asarray(requested, dtype=np.float64)
    if not np.isfinite(measured).all() or measured.std() == 0 or requested.std() == 0 or len(measured) < 3:
        return 0.0
    return float(pearsonr(measured, requested).statistic)
