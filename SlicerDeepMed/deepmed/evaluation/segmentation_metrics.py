"""Per-label segmentation metrics on voxel arrays, distances in mm.

Surface voxels are the mask minus its erosion (6-connected), as in MONAI; surface distances are exact
Euclidean distances between surface voxel centres, scaled by the spacing. HD95 is the maximum of the two
directed 95th percentiles (MONAI's ``compute_hausdorff_distance(percentile=95)``); ASSD is the mean of
both directed distance sets together.

Rules for empty masks (never a crash, never a silent NaN):
  * a ratio whose denominator is 0 (0/0) is 1.0: Dice and Jaccard when both masks are empty, sensitivity
    when the reference is empty, precision when the prediction is empty, specificity when the reference
    fills the image;
  * hd, hd95 and assd are 0 when both are empty and the image diagonal in mm (the largest distance the
    image can hold) when only one is empty;
  * rel_volume_diff = (V_pred - V_ref) / V_ref is 0 when both are empty and +inf when only the reference is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import binary_erosion
from scipy.spatial import cKDTree

SEGMENTATION_COLUMNS = ("case", "label", "name", "dice", "jaccard", "sensitivity", "specificity", "precision", "hd",
                        "hd95", "assd", "volume_ref_ml", "volume_pred_ml", "rel_volume_diff")


def _ratio(numerator: float, denominator: float) -> float:
    return 1.0 if denominator == 0 else float(numerator) / float(denominator)


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Coordinates (voxel indices) of the mask's surface: the mask minus its 6-connected erosion."""
    edges = mask ^ binary_erosion(mask)
    return np.argwhere(edges)


def directed_surface_distances(from_mask: np.ndarray, to_mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (mm) from every surface voxel of ``from_mask`` to the nearest surface voxel of ``to_mask``."""
    scale = np.asarray(spacing, dtype=np.float64)
    source = surface_voxels(from_mask) * scale
    target = surface_voxels(to_mask) * scale
    return cKDTree(target).query(source, k=1)[0]


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    return float(np.linalg.norm(np.asarray(shape, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)))


def surface_metrics(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """hd, hd95 and assd (mm) between two boolean masks, with the empty-mask rules of this module."""
    ref_any, pred_any = bool(reference.any()), bool(prediction.any())
    if not ref_any and not pred_any:
        return {"hd": 0.0, "hd95": 0.0, "assd": 0.0}
    if not ref_any or not pred_any:
        worst = image_diagonal_mm(reference.shape, spacing)
        return {"hd": worst, "hd95": worst, "assd": worst}
    d_pred = directed_surface_distances(prediction, reference, spacing)
    d_ref = directed_surface_distances(reference, prediction, spacing)
    return {
        "hd": float(max(d_pred.max(), d_ref.max())),
        "hd95": float(max(np.percentile(d_pred, 95), np.percentile(d_ref, 95))),
        "assd": float(np.concatenate([d_pred, d_ref]).mean()),
    }


def binary_metrics(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
                   distances: bool = True) -> dict[str, float]:
    """All metrics for one label, given boolean masks on the same grid and the spacing in array-axis order."""
    reference = np.asarray(reference, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if reference.shape != prediction.shape:
        raise ValueError(f"reference and prediction shapes differ: {reference.shape} vs {prediction.shape}")
    tp = int(np.count_nonzero(reference & prediction))
    fp = int(np.count_nonzero(prediction & ~reference))
    fn = int(np.count_nonzero(reference & ~prediction))
    tn = int(reference.size - tp - fp - fn)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    v_ref, v_pred = (tp + fn) * voxel_ml, (tp + fp) * voxel_ml
    if v_ref > 0:
        rvd = (v_pred - v_ref) / v_ref
    else:
        rvd = 0.0 if v_pred == 0 else float("inf")
    metrics = {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "jaccard": _ratio(tp, tp + fp + fn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "volume_ref_ml": v_ref,
        "volume_pred_ml": v_pred,
        "rel_volume_diff": rvd,
    }
    if distances:
        metrics.update(surface_metrics(reference, prediction, spacing))
    return metrics


def segmentation_metrics(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
                         labels: Sequence[int] | None = None, distances: bool = True) -> dict[int, dict[str, float]]:
    """Metrics for each label value (default: every non-zero value present in either array)."""
    if labels is None:
        labels = sorted((set(np.unique(reference).tolist()) | set(np.unique(prediction).tolist())) - {0})
    return {int(v): binary_metrics(reference == v, prediction == v, spacing, distances) for v in labels}
