"""The standard click-simulation protocol: a click at the centre of the largest error region."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SimulatedClick:
    """A simulated click in numpy (z, y, x) index order; positive = a missed foreground voxel."""

    index_zyx: tuple[int, int, int]
    positive: bool


def next_click(prediction: np.ndarray, truth: np.ndarray, spacing_zyx=(1.0, 1.0, 1.0)) -> SimulatedClick | None:
    """Largest connected error component (FN or FP, 3D), its voxel farthest from the component's border
    (Euclidean distance transform with the spacing; among equally deep voxels the most central one);
    None when prediction == truth."""
    prediction = np.asarray(prediction).astype(bool)
    truth = np.asarray(truth).astype(bool)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from truth shape {truth.shape}")
    best: tuple[int, bool, np.ndarray] | None = None
    for positive, error in ((True, truth & ~prediction), (False, prediction & ~truth)):
        if not error.any():
            continue
        components, _ = ndimage.label(error)
        sizes = np.bincount(components.ravel())[1:]
        largest = int(np.argmax(sizes))
        if best is None or sizes[largest] > best[0]:
            best = (int(sizes[largest]), positive, components == largest + 1)
    if best is None:
        return None
    _, positive, component = best
    # Pad so that voxels on the array's edge count as border too.
    inner = tuple(slice(1, -1) for _ in component.shape)
    distance = ndimage.distance_transform_edt(np.pad(component, 1), sampling=spacing_zyx)[inner]
    return SimulatedClick(_central_maximum(distance, spacing_zyx), positive)


def _central_maximum(distance: np.ndarray, spacing_zyx) -> tuple[int, ...]:
    """The voxel of maximal distance; among ties (a slab has many), the one nearest their centroid."""
    ties = np.argwhere(distance >= distance.max() - 1e-6)
    scale = np.asarray(spacing_zyx, dtype=float)
    centre = ties.mean(axis=0)
    nearest = int(np.argmin((((ties - centre) * scale) ** 2).sum(axis=1)))
    return tuple(int(i) for i in ties[nearest])
