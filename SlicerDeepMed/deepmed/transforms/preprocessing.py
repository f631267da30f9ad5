"""Deterministic preprocessing shared by training and inference, on SimpleITK images.

Every case is re-oriented (exact axis permutation/flip, no interpolation) so that its axes point as
close as possible to L, P, S, then resampled onto a *working grid* at the target spacing covering the
same physical box. Network outputs are resampled from the working grid back onto the input's own grid,
so that results lie voxel for voxel on the input, whatever its direction, handedness or spacing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

CANONICAL = "LPS"


def oriented(image: sitk.Image, orientation: str = CANONICAL) -> sitk.Image:
    """Permute/flip axes (exactly) so that they point as close as possible to ``orientation`` (LPS: identity)."""
    return sitk.DICOMOrient(image, orientation)


def working_grid(image: sitk.Image, spacing_xyz: Sequence[float], orientation: str = CANONICAL) -> sitk.Image:
    """An empty image: ``image``'s oriented box sampled at ``spacing_xyz``, outer boundaries aligned."""
    source = oriented(image, orientation)
    old_spacing = np.asarray(source.GetSpacing(), dtype=np.float64)
    new_spacing = np.asarray(spacing_xyz, dtype=np.float64)
    extent = np.asarray(source.GetSize(), dtype=np.float64) * old_spacing
    size = np.maximum(1, np.round(extent / new_spacing)).astype(int)
    direction = np.asarray(source.GetDirection(), dtype=np.float64).reshape(3, 3)
    # voxel centres of both grids start half a voxel inside the same physical corner
    origin = np.asarray(source.GetOrigin()) + direction @ ((new_spacing - old_spacing) / 2)
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing(new_spacing.tolist())
    grid.SetOrigin(origin.tolist())
    grid.SetDirection(source.GetDirection())
    return grid


def resample_onto(image: sitk.Image, reference: sitk.Image, interpolator=sitk.sitkLinear,
                  pixel_type=sitk.sitkFloat32) -> sitk.Image:
    """Resample ``image`` onto ``reference``'s grid; outside the image the nearest voxel's value is used."""
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, pixel_type, True)


def to_working_grid(channels: list[sitk.Image], label: sitk.Image | None, spacing_xyz: Sequence[float],
                    label_is_discrete: bool = True, orientation: str = CANONICAL
                    ) -> tuple[np.ndarray, np.ndarray | None, sitk.Image]:
    """Resample channels (linear) and label (nearest, or linear for regression targets) onto the working grid.

    Returns the (C, Z, Y, X) float32 image array, the (1, Z, Y, X) target array or None, and the grid.
    """
    grid = working_grid(channels[0], spacing_xyz, orientation)
    image = np.stack([sitk.GetArrayFromImage(resample_onto(c, grid)) for c in channels]).astype(np.float32)
    target = None
    if label is not None:
        if label_is_discrete:
            resampled = resample_onto(label, grid, sitk.sitkNearestNeighbor, sitk.sitkInt32)
            target = sitk.GetArrayFromImage(resampled)[None].astype(np.int16)
        else:
            target = sitk.GetArrayFromImage(resample_onto(label, grid))[None].astype(np.float32)
    return image, target, grid


def oriented_spacing_and_shape(image: sitk.Image) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Spacing and size (x, y, z) of ``image`` after orientation, read from the header only."""
    o = oriented(image)
    return tuple(o.GetSpacing()), tuple(o.GetSize())


# ---- intensity normalisation -------------------------------------------------------------------------

def is_ct_channel(name: str) -> bool:
    return "ct" in [t.lower() for t in name.replace("-", " ").replace("_", " ").split()]


def channel_statistics(arrays: list[np.ndarray], masks: list[np.ndarray | None], seed: int = 0) -> dict:
    """Dataset-level intensity statistics of one channel (foreground voxels where a mask is given)."""
    rng = np.random.default_rng(seed)
    parts = []
    for array, mask in zip(arrays, masks):
        values = array[mask] if mask is not None and mask.any() else array.reshape(-1)
        parts.append(values[rng.choice(values.size, size=min(values.size, 100000), replace=False)])
    values = np.concatenate(parts).astype(np.float64)
    low, high = np.percentile(values, [0.5, 99.5])
    clipped = np.clip(values, low, high)
    return {"p0_5": float(low), "p99_5": float(high), "mean": float(clipped.mean()),
            "std": float(max(clipped.std(), 1e-8))}


def foreground_mask(array: np.ndarray) -> np.ndarray:
    """Voxels above the image minimum when that removes at least 10% of the image (MR background), else all."""
    mask = array > array.min()
    return mask if mask.mean() <= 0.9 else np.ones(array.shape, dtype=bool)


def normalize_channel(array: np.ndarray, method: str, stats: dict | None) -> np.ndarray:
    """Apply one normalisation method to one channel array (float32 out)."""
    array = array.astype(np.float32, copy=False)
    if method == "ct":
        clipped = np.clip(array, stats["p0_5"], stats["p99_5"])
        return ((clipped - stats["mean"]) / stats["std"]).astype(np.float32)
    if method in ("zscore", "zscore_foreground"):
        mask = foreground_mask(array) if method == "zscore_foreground" else np.ones(array.shape, dtype=bool)
        values = array[mask]
        std = float(values.std()) or 1.0
        return ((array - float(values.mean())) / std).astype(np.float32)
    if method == "scale_range":  # MONAI's ScaleIntensityRange: [a_min, a_max] -> [b_min, b_max]
        scaled = (array - stats["a_min"]) / (stats["a_max"] - stats["a_min"]) * (stats["b_max"] - stats["b_min"]) \
            + stats["b_min"]
        if stats.get("clip", False):
            scaled = np.clip(scaled, min(stats["b_min"], stats["b_max"]), max(stats["b_min"], stats["b_max"]))
        return scaled.astype(np.float32)
    if method == "minmax":
        low, high = np.percentile(array, [0.5, 99.5])
        return ((np.clip(array, low, high) - low) / max(high - low, 1e-8)).astype(np.float32)
    return array


def normalize_image(image: np.ndarray, methods: list[str], stats: list[dict | None]) -> np.ndarray:
    """Normalise a (C, Z, Y, X) array channel by channel."""
    return np.stack([normalize_channel(image[c], methods[c], stats[c]) for c in range(image.shape[0])])
