"""nnU-Net's export of a prediction: logits resampled back to the cropped region's shape, softmax-argmax (or
sigmoid regions painted in ``regions_class_order``), re-inserted into the bounding box, transposed back."""

from __future__ import annotations

import numpy as np
import torch

from deepmed.nnunet.preprocessing import CaseGeometry
from deepmed.nnunet.resampling import resample


def to_segmentation(logits: np.ndarray, regions_class_order: list[int] | None) -> np.ndarray:
    """Labels from logits: argmax (labels are 0..C-1 in nnU-Net), or each region's sigmoid > 0.5 painted in
    order (a later region wins where they overlap)."""
    if regions_class_order is None:
        return logits.argmax(0)
    probabilities = torch.sigmoid(torch.from_numpy(logits).float()).numpy()
    segmentation = np.zeros(logits.shape[1:], dtype=np.uint16)
    for channel, value in enumerate(regions_class_order):
        segmentation[probabilities[channel] > 0.5] = value
    return segmentation


def export_segmentation(logits: torch.Tensor, geometry: CaseGeometry, settings: dict) -> np.ndarray:
    """The label array in the input's own (Z, Y, X) order and shape."""
    kwargs = settings["resampling_probabilities"]
    resampled = resample(logits.numpy(), geometry.shape_after_cropping, settings["spacing"], geometry.spacing,
                         order=kwargs["order"], order_z=kwargs["order_z"], force_separate_z=kwargs["force_separate_z"])
    segmentation = to_segmentation(resampled, settings.get("regions_class_order"))
    dtype = np.uint8 if max(settings["label_values"]) < 255 else np.uint16
    full = np.zeros(geometry.shape_before_cropping, dtype=dtype)
    full[tuple(slice(a, b) for a, b in geometry.bbox)] = segmentation
    return np.ascontiguousarray(full.transpose(settings["transpose_backward"]))
