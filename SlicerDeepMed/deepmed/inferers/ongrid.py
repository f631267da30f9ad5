"""Bring working-grid results back onto the exact grid of the input, and tidy label maps."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from deepmed.transforms.preprocessing import resample_onto


def back_to_input(array: np.ndarray, grid: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """One (Z, Y, X) working-grid array resampled (linearly) onto ``reference``'s grid."""
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.CopyInformation(grid)
    return sitk.GetArrayFromImage(resample_onto(image, reference))


def image_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def keep_largest_component(labels: np.ndarray) -> np.ndarray:
    """For each label value keep only its largest 26-connected component."""
    out = labels.copy()
    for value in np.unique(labels):
        if value == 0:
            continue
        components, n = ndimage.label(labels == value, structure=np.ones((3, 3, 3)))
        if n > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[(components > 0) & (components != 1 + int(np.argmax(sizes)))] = 0
    return out
