"""Guidance channels of an interactive model: Gaussian blobs around clicks (in mm), the previous mask and
the refined label's one-hot planes; and the region around the clicks that a refinement computes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepmed.errors import DeepMedError

#: The guidance channels of one label (after the image channels, these three for each foreground label in turn).
GUIDANCE_CHANNELS = ("positive_clicks", "negative_clicks", "previous_mask")


#: The default region a click computes, in working-grid voxels (x, y, z): the latency target is per 128^3.
DEFAULT_REGION = (128, 128, 128)


@dataclass(frozen=True)
class GuidanceSettings:
    """The card's ``task.guidance``: blob width (mm), the labels (in channel order) and the region a click computes."""

    sigma_mm: float
    labels: tuple[str, ...]                 # foreground label names, in plane order
    region_size: tuple[int, int, int] = DEFAULT_REGION  # x, y, z working-grid voxels

    @classmethod
    def of(cls, card) -> GuidanceSettings:
        """From a ModelCard."""
        guidance = (card.task or {}).get("guidance")
        if not isinstance(guidance, dict) or "sigma_mm" not in guidance:
            raise DeepMedError("model card: task.guidance (sigma_mm, labels) is missing: not an interactive model")
        return cls(float(guidance["sigma_mm"]), tuple(guidance.get("labels") or ()),
                   tuple(int(v) for v in guidance.get("region_size", DEFAULT_REGION)))

    def to_dict(self) -> dict:
        return {"sigma_mm": self.sigma_mm, "labels": list(self.labels), "region_size": list(self.region_size)}


def gaussian_blobs(shape_zyx: Sequence[int], points_zyx: Sequence[Sequence[float]], spacing_zyx: Sequence[float],
                   sigma_mm: float) -> np.ndarray:
    """(Z, Y, X) float32 map: at each voxel the largest exp(-d^2 / 2 sigma^2) over the points, d in mm (so
    anisotropic spacing gives round blobs in space); computed in a 3-sigma window around each point."""
    out = np.zeros(tuple(shape_zyx), dtype=np.float32)
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    radius = 3.0 * sigma_mm / spacing
    for point in points_zyx:
        point = np.asarray(point, dtype=np.float64)
        low = np.maximum(np.floor(point - radius).astype(int), 0)
        high = np.minimum(np.ceil(point + radius).astype(int) + 1, out.shape)
        if np.any(high <= low):
            continue
        axes = [((np.arange(lo, hi) - p) * s) ** 2 for lo, hi, p, s in zip(low, high, point, spacing)]
        squared = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
        blob = np.exp(-squared / (2.0 * sigma_mm ** 2)).astype(np.float32)
        window = tuple(slice(lo, hi) for lo, hi in zip(low, high))
        np.maximum(out[window], blob, out=out[window])
    return out


def guidance_stack(shape_zyx: Sequence[int], positive_zyx, negative_zyx, previous: np.ndarray | None,
                   label_index: int, label_count: int, spacing_zyx, sigma_mm: float) -> np.ndarray:
    """(3 x label_count, Z, Y, X) float32: per foreground label (1..label_count) its positive blobs, negative
    blobs and previous mask (0/1); only the refined label's (``label_index``) are filled, so the channels say
    which label the clicks are about. (A constant one-hot label plane would not: the first convolution followed
    by instance normalisation removes a constant input.)"""
    shape = tuple(int(s) for s in shape_zyx)
    if not 1 <= int(label_index) <= int(label_count):
        raise ValueError(f"label_index must be in 1..{label_count}, got {label_index}")
    planes = np.zeros((len(GUIDANCE_CHANNELS) * label_count, *shape), dtype=np.float32)
    first = len(GUIDANCE_CHANNELS) * (int(label_index) - 1)
    planes[first] = gaussian_blobs(shape, positive_zyx, spacing_zyx, sigma_mm)
    planes[first + 1] = gaussian_blobs(shape, negative_zyx, spacing_zyx, sigma_mm)
    if previous is not None:
        planes[first + 2] = previous
    return planes


def guidance_channel_names(labels: Sequence[str]) -> list[str]:
    """The guidance channels' names, in :func:`guidance_stack`'s order."""
    return [f"{kind}_{name}" for name in labels for kind in GUIDANCE_CHANNELS]


@dataclass(frozen=True)
class Region:
    """A box of a (Z, Y, X) array: ``start`` and ``stop`` indices."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.start, self.stop))


def refine_region(shape_zyx: Sequence[int], points_zyx, size_zyx: Sequence[int], margin: Sequence[int],
                  also: Region | None = None) -> Region:
    """The box a refinement computes: the whole array without points; else a box of ``size_zyx`` (or larger
    when the points with ``margin`` span more) centred on the points' box, which also covers ``also`` (the
    previous mask's box) when that fits in ``size_zyx``; clipped to the array."""
    shape = np.asarray(shape_zyx, dtype=int)
    if len(points_zyx) == 0:
        return Region((0, 0, 0), tuple(int(s) for s in shape))
    points = np.asarray(points_zyx, dtype=np.float64)
    low, high = np.floor(points.min(axis=0)).astype(int), np.ceil(points.max(axis=0)).astype(int) + 1
    extent = np.maximum(np.asarray(size_zyx, dtype=int), high - low + 2 * np.asarray(margin))
    if also is not None:
        low_all = np.minimum(low, also.start)
        high_all = np.maximum(high, also.stop)
        if np.all(high_all - low_all <= np.asarray(size_zyx)):
            low, high = low_all, high_all
    extent = np.minimum(shape, extent)
    centre = (low + high) // 2
    start = np.clip(centre - extent // 2, 0, shape - extent)
    return Region(tuple(int(v) for v in start), tuple(int(v) for v in start + extent))


def bounding_region(mask: np.ndarray) -> Region | None:
    """The box of a mask's True voxels, or None when it is empty."""
    if not mask.any():
        return None
    bounds = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        bounds.append((int(hits[0]), int(hits[-1]) + 1))
    return Region(tuple(b[0] for b in bounds), tuple(b[1] for b in bounds))
