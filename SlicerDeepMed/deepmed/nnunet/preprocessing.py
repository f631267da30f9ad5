"""nnU-Net's ``DefaultPreprocessor`` for one case at inference: transpose, crop to the non-zero region,
normalise each channel by its scheme, resample to the configuration's spacing.

``settings`` is the ``task`` section of an imported model's card (see ``deepmed.zoo.nnunet_import``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_fill_holes

from deepmed.errors import DeepMedError
from deepmed.nnunet.resampling import new_shape, resample

SCHEMES = ("CTNormalization", "ZScoreNormalization", "NoNormalization", "RescaleTo01Normalization",
           "RGBTo01Normalization")


@dataclass
class CaseGeometry:
    """What export needs to undo the preprocessing (nnU-Net's ``properties`` dict)."""

    spacing: list[float]            # of the transposed array
    shape_before_cropping: tuple
    bbox: list[list[int]]           # half-open [start, end) per axis
    shape_after_cropping: tuple


def nonzero_bbox(data: np.ndarray) -> tuple[np.ndarray, list[list[int]]]:
    """The mask of non-zero voxels (any channel, holes filled) and its bounding box (whole array if empty)."""
    mask = binary_fill_holes(np.any(data != 0, axis=0))
    bbox = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        bbox.append([int(present[0]), int(present[-1]) + 1] if present.size else [0, mask.shape[axis]])
    return mask, bbox


def normalize(image: np.ndarray, scheme: str, use_mask: bool, outside: np.ndarray, properties: dict) -> np.ndarray:
    """One channel (float32) normalised as nnU-Net's scheme of that name does."""
    image = image.astype(np.float32, copy=False)
    eps = 1e-8
    if scheme == "CTNormalization":
        np.clip(image, properties["percentile_00_5"], properties["percentile_99_5"], out=image)
        image -= properties["mean"]
        image /= max(properties["std"], eps)
    elif scheme == "ZScoreNormalization":
        if use_mask:
            inside = ~outside
            mean, std = image[inside].mean(), image[inside].std()
            image[inside] = (image[inside] - mean) / max(std, eps)
        else:
            mean, std = image.mean(), image.std()
            image -= mean
            image /= max(std, eps)
    elif scheme == "RescaleTo01Normalization":
        image -= image.min()
        image /= np.clip(image.max(), a_min=eps, a_max=None)
    elif scheme == "RGBTo01Normalization":
        image /= 255.0
    elif scheme != "NoNormalization":
        raise DeepMedError(f"normalisation scheme {scheme!r} is not one nnU-Net ships ({', '.join(SCHEMES)})")
    return image


def target_spacing(settings: dict, spacing: list[float]) -> list[float]:
    """The configuration's spacing for a case of ``spacing`` (transposed): a 2D configuration keeps the slice
    spacing (nnU-Net's rule)."""
    target = [float(s) for s in settings["spacing"]]
    return target if len(target) == len(spacing) else [float(spacing[0]), *target]


def previous_stage_channels(labels: np.ndarray, foreground: list[int]) -> np.ndarray:
    """nnU-Net's ``convert_labelmap_to_one_hot`` of the previous stage's (preprocessed) labels, one channel per
    foreground label (the cascade's extra inputs)."""
    return np.stack([labels == value for value in foreground]).astype(np.float32)


def preprocess(channels: list[np.ndarray], spacing_zyx: list[float], settings: dict,
               previous: np.ndarray | None = None) -> tuple[np.ndarray, CaseGeometry]:
    """``channels``: (Z, Y, X) arrays as SimpleITK gives them; ``spacing_zyx``: their spacing in that order;
    ``previous``: a cascade's previous-stage labels on the same grid, preprocessed with the image as nnU-Net's
    ``DefaultPreprocessor`` does with a segmentation and appended as one-hot channels.
    Returns the network input (C, ...) float32 and what export needs."""
    forward = settings["transpose_forward"]
    data = np.empty((len(channels), *np.shape(channels[0])), dtype=np.float32)
    for index, channel in enumerate(channels):  # one float32 copy (np.stack would copy the input type first)
        data[index] = channel
    data = data.transpose([0, *[i + 1 for i in forward]])
    spacing = [abs(float(spacing_zyx[i])) for i in forward]
    shape_before = data.shape[1:]
    mask, bbox = nonzero_bbox(data)
    crop = tuple(slice(a, b) for a, b in bbox)
    data = data[(slice(None), *crop)]
    outside = ~mask[crop]
    seg = None
    if previous is not None:
        seg = np.asarray(previous, dtype=np.float32).transpose(forward)[crop].copy()
        seg[(seg == 0) & outside] = -1
        outside = seg < 0  # nnU-Net's normalisation mask is seg >= 0
    shape_after = data.shape[1:]
    target_spacing_here = target_spacing(settings, spacing)
    target = new_shape(shape_after, spacing, target_spacing_here)
    for c in range(data.shape[0]):
        data[c] = normalize(data[c], settings["normalization_schemes"][c], settings["use_mask_for_norm"][c],
                            outside, settings["intensity_properties"].get(str(c), {}))
    kwargs = settings["resampling_data"]
    data = resample(data, target, spacing, target_spacing_here, order=kwargs["order"], order_z=kwargs["order_z"],
                    force_separate_z=kwargs["force_separate_z"])
    if seg is not None:
        kwargs = settings["resampling_segmentation"]
        seg = resample(seg[None], target, spacing, target_spacing_here, order=kwargs["order"],
                       order_z=kwargs["order_z"], force_separate_z=kwargs["force_separate_z"], is_seg=True)[0]
        data = np.concatenate([data, previous_stage_channels(seg, settings["foreground_labels"])])
    return np.ascontiguousarray(data, dtype=np.float32), CaseGeometry(spacing, shape_before, bbox, shape_after)
