"""Random patch sampling and augmentation for training, built from MONAI dictionary transforms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from monai import transforms as mt

KEYS = ("image", "label")


@dataclass(frozen=True)
class AugmentationSettings:
    """``augmentation:`` of a resolved configuration: which random transforms, and their probability."""

    flip: bool
    rotate: bool
    scale: bool
    elastic: bool
    noise: bool
    gamma: bool
    bias_field: bool
    contrast: bool
    probability: float

    @classmethod
    def from_config(cls, config: Mapping) -> AugmentationSettings:
        section = config["augmentation"]
        return cls(**{name: section[name] for name in cls.__dataclass_fields__})


def sampling_transforms(mode: str, patch_zyx: Sequence[int], samples: int, num_classes: int,
                        foreground_ratio: float) -> list:
    """Pad to the patch, then draw ``samples`` patches per case.

    Modes: ``uniform`` (anywhere), ``foreground`` (centred on foreground with probability ``foreground_ratio``),
    ``class_balanced`` (centre class drawn uniformly among classes), ``weighted`` (centre drawn from the
    ``weight`` map: inverse class frequency, NiftyNet's weighted sampler).
    """
    patch = list(patch_zyx)
    pad = mt.SpatialPadd(KEYS, spatial_size=patch, mode="constant")
    if mode == "uniform":
        crop = mt.RandSpatialCropSamplesd(KEYS, roi_size=patch, num_samples=samples, random_size=False)
    elif mode == "foreground":
        crop = mt.RandCropByPosNegLabeld(KEYS, label_key="label", spatial_size=patch, pos=foreground_ratio,
                                         neg=1 - foreground_ratio, num_samples=samples, allow_smaller=True)
    elif mode == "class_balanced":
        crop = mt.RandCropByLabelClassesd(KEYS, label_key="label", spatial_size=patch, num_classes=num_classes,
                                          num_samples=samples, allow_smaller=True, warn=False)
    elif mode == "weighted":
        return [pad, mt.SpatialPadd(["weight"], spatial_size=patch),
                mt.RandWeightedCropd(KEYS, w_key="weight", spatial_size=patch, num_samples=samples),
                mt.DeleteItemsd(["weight"])]
    else:
        raise ValueError(f"unknown sampling mode {mode!r}")
    return [pad, crop]


def inverse_frequency_weights(label: np.ndarray) -> np.ndarray:
    """A sampling weight map where each class has the same total weight."""
    values, counts = np.unique(label, return_counts=True)
    weights = np.zeros(label.shape, dtype=np.float32)
    for value, count in zip(values, counts):
        weights[label == value] = 1.0 / count
    return weights


def augmentation_transforms(settings: AugmentationSettings, label_is_discrete: bool,
                            keys: Sequence[str] = KEYS) -> list:
    """Spatial augmentation (image and label together; ``keys=("image",)`` for an image alone, e.g. a case-level
    target) then intensity augmentation (image only)."""
    p = float(settings.probability)
    mode = ("bilinear", "nearest" if label_is_discrete else "bilinear")[:len(keys)]
    out: list = []
    if settings.rotate or settings.scale:
        out.append(mt.RandAffined(keys, prob=p, mode=mode, padding_mode="border",
                                  rotate_range=[0.26] * 3 if settings.rotate else None,
                                  scale_range=[0.15] * 3 if settings.scale else None))
    if settings.elastic:
        out.append(mt.Rand3DElasticd(keys, sigma_range=(5, 8), magnitude_range=(50, 150), prob=p, mode=mode,
                                     padding_mode="border"))
    if settings.flip:
        out.extend(mt.RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in range(3))
    if settings.noise:
        out.append(mt.RandGaussianNoised(["image"], prob=p, std=0.1))
    if settings.gamma:
        out.append(mt.RandAdjustContrastd(["image"], prob=p, gamma=(0.7, 1.5)))
    if settings.bias_field:
        out.append(mt.RandBiasFieldd(["image"], prob=p, coeff_range=(0.0, 0.2)))
    if settings.contrast:
        out.append(mt.RandScaleIntensityd(["image"], prob=p, factors=0.25))
        out.append(mt.RandShiftIntensityd(["image"], prob=p, offsets=0.1))
    return out


def training_transforms(augmentation: AugmentationSettings, patch_zyx: Sequence[int], sampling: str,
                        num_classes: int, label_is_discrete: bool, samples_per_case: int,
                        foreground_ratio: float) -> mt.Compose:
    """The random part of the training pipeline (inputs are cached, preprocessed numpy arrays)."""
    steps = sampling_transforms(sampling, patch_zyx, samples_per_case, num_classes, foreground_ratio)
    steps += augmentation_transforms(augmentation, label_is_discrete)
    steps.append(mt.ToTensord(KEYS, track_meta=False))
    return mt.Compose(steps)
