"""nnU-Net's export of a prediction: logits resampled back to the cropped region's shape, softmax-argmax (or
sigmoid regions painted in ``regions_class_order``), re-inserted into the bounding box, transposed back; and the
probabilities nnU-Net saves for its cross-configuration ensembles."""

from __future__ import annotations

import numpy as np
import torch

from deepmed.nnunet import slab_resampling
from deepmed.nnunet.preprocessing import CaseGeometry, target_spacing
from deepmed.nnunet.resampling import resample, separate_z
from deepmed.nnunet.slab_resampling import resampled_slabs


def streams(data_shape, shape, spacing, target_spacing, force_separate_z) -> bool:
    """Whether slabs apply (:func:`~deepmed.nnunet.slab_resampling.resampled_slabs`): a real resize without
    nnU-Net's separate-z rule, on this scipy."""
    if tuple(data_shape[1:]) == tuple(shape):
        return True
    return not separate_z(spacing, target_spacing, force_separate_z)[0] and slab_resampling.slabs_supported()


def first_argmax(values: np.ndarray) -> np.ndarray:
    """``values.argmax(0)`` (the first channel wins a tie) as a running comparison in float32 (exact for float16
    and float32 values), about 2.5x faster than numpy's argmax over the first axis of float16; uint8 up to 255
    channels. NaN anywhere: numpy's own argmax."""
    if values.shape[0] > 255 or values.dtype not in (np.float16, np.float32):
        return values.argmax(0)
    best = values[0].astype(np.float32)
    winner = np.zeros(values.shape[1:], dtype=np.uint8)
    for channel in range(1, values.shape[0]):
        candidate = values[channel].astype(np.float32)
        winner[candidate > best] = channel
        np.maximum(best, candidate, out=best)
    return values.argmax(0) if np.isnan(best).any() else winner


def to_segmentation(logits: np.ndarray, regions_class_order: list[int] | None) -> np.ndarray:
    """Labels from logits: argmax (labels are 0..C-1 in nnU-Net), or each region's sigmoid > 0.5 painted in
    order (a later region wins where they overlap)."""
    if regions_class_order is None:
        return first_argmax(logits)
    probabilities = torch.sigmoid(torch.from_numpy(logits).float()).numpy()
    segmentation = np.zeros(logits.shape[1:], dtype=np.uint16)
    for channel, value in enumerate(regions_class_order):
        segmentation[probabilities[channel] > 0.5] = value
    return segmentation


def _resampled_logits(logits: torch.Tensor, geometry: CaseGeometry, settings: dict) -> np.ndarray:
    kwargs = settings["resampling_probabilities"]
    return resample(logits.numpy(), geometry.shape_after_cropping, target_spacing(settings, geometry.spacing),
                    geometry.spacing, order=kwargs["order"], order_z=kwargs["order_z"],
                    force_separate_z=kwargs["force_separate_z"])


def label_dtype(settings: dict):
    return np.uint8 if max(settings["label_values"]) < 255 else np.uint16


def export_segmentation(logits: torch.Tensor, geometry: CaseGeometry, settings: dict) -> np.ndarray:
    """The label array in the input's own (Z, Y, X) order and shape. The logits are resampled and turned into
    labels a slab of slices at a time where that gives the same numbers (:mod:`deepmed.nnunet.slab_resampling`),
    else as one volume."""
    order = settings.get("regions_class_order")
    full = np.zeros(geometry.shape_before_cropping, dtype=label_dtype(settings))
    box = [slice(a, b) for a, b in geometry.bbox]
    kwargs = settings["resampling_probabilities"]
    network_spacing = target_spacing(settings, geometry.spacing)
    array = logits.numpy()
    if streams(array.shape, geometry.shape_after_cropping, network_spacing, geometry.spacing,
               kwargs["force_separate_z"]):
        for rows, slab in resampled_slabs(array, geometry.shape_after_cropping, kwargs["order"]):
            first = box[0].start
            full[(slice(first + rows.start, first + rows.stop), *box[1:])] = to_segmentation(slab, order)
            del slab
    else:
        full[tuple(box)] = to_segmentation(_resampled_logits(logits, geometry, settings), order)
    transpose = settings["transpose_backward"]
    return full if list(transpose) == list(range(full.ndim)) else np.ascontiguousarray(full.transpose(transpose))


def export_probabilities(logits: torch.Tensor, geometry: CaseGeometry, settings: dict) -> np.ndarray:
    """nnU-Net's saved probabilities (``--save_probabilities``, what ``nnUNetv2_ensemble`` averages): softmax
    (sigmoid for regions) of the resampled logits in float32, background 1 outside the cropped box (plain
    labels), in the input's own (C, Z, Y, X) order."""
    resampled = torch.from_numpy(_resampled_logits(logits, geometry, settings)).float()
    regions = settings.get("regions_class_order") is not None
    probabilities = (torch.sigmoid(resampled) if regions else torch.softmax(resampled, 0)).numpy()
    full = np.zeros((probabilities.shape[0], *geometry.shape_before_cropping), dtype=probabilities.dtype)
    if not regions:
        full[0] = 1
    full[(slice(None), *[slice(a, b) for a, b in geometry.bbox])] = probabilities
    return np.ascontiguousarray(full.transpose([0, *[i + 1 for i in settings["transpose_backward"]]]))


def probabilities_to_segmentation(probabilities: np.ndarray, settings: dict) -> np.ndarray:
    """``convert_probabilities_to_segmentation``: argmax, or regions over 0.5 painted in order."""
    order = settings.get("regions_class_order")
    if order is None:
        return probabilities.argmax(0).astype(label_dtype(settings))
    segmentation = np.zeros(probabilities.shape[1:], dtype=label_dtype(settings))
    for channel, value in enumerate(order):
        segmentation[probabilities[channel] > 0.5] = value
    return segmentation
