"""Bring working-grid results back onto the exact grid of the input, and tidy label maps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from deepmed.transforms.preprocessing import resample_onto


def back_to_input(array: np.ndarray, grid: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """One (Z, Y, X) working-grid array resampled (linearly) onto ``reference``'s grid."""
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.CopyInformation(grid)
    return sitk.GetArrayFromImage(resample_onto(image, reference))


def channels_on_input(activation: np.ndarray, grid: sitk.Image, reference: sitk.Image) -> Iterator[np.ndarray]:
    """Each (Z, Y, X) channel of a working-grid ``activation`` resampled onto ``reference``'s grid, one at a time:
    memory for one channel, however many there are. Each is a float32 *view*, valid only until the next one is
    drawn or the generator is closed (use it inside the loop; ``np.array(view)`` to keep it)."""
    for channel in activation:
        image = sitk.GetImageFromArray(np.asarray(channel, dtype=np.float32))
        image.CopyInformation(grid)
        resampled = resample_onto(image, reference)
        del image
        yield sitk.GetArrayViewFromImage(resampled)
        del resampled


def running_argmax(channels: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(index of the largest channel, its value) per voxel, drawing channels one by one; ties go to the first
    channel, as ``np.argmax`` does. Works in place: no temporary array per channel."""
    best = index = better = None
    for c, values in enumerate(channels):
        if best is None:
            best = np.array(values, dtype=np.float32)
            index = np.zeros(best.shape, dtype=np.uint16)
            better = np.empty(best.shape, dtype=bool)
            continue
        np.greater(values, best, out=better)
        np.copyto(index, c, where=better)
        np.maximum(best, values, out=best)
    return index, best


def image_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def keep_largest_component(labels: np.ndarray, values: Iterable[int] | None = None) -> np.ndarray:
    """For each label value (or each of ``values``) keep only its largest 26-connected component."""
    out = labels.copy()
    wanted = None if values is None else set(int(v) for v in values)
    for value in np.unique(labels):
        if value == 0 or (wanted is not None and int(value) not in wanted):
            continue
        components, n = ndimage.label(labels == value, structure=np.ones((3, 3, 3)))
        if n > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[(components > 0) & (components != 1 + int(np.argmax(sizes)))] = 0
    return out
