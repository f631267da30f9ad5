"""Read, orient, resample and normalise the training cases once (cached in memory for every epoch)."""

from __future__ import annotations

import numpy as np

from deepmed.applications import Application
from deepmed.data.case_io import read_case
from deepmed.data.manifest import Case
from deepmed.transforms.augmentation import inverse_frequency_weights
from deepmed.transforms.preprocessing import (
    channel_statistics, is_ct_channel, normalize_image, oriented_spacing_and_shape, to_working_grid)

DIVISOR = 16  # patch sizes divisible by 2^4 (four down-samplings)


def median_spacing(cases_channels: list) -> list[float]:
    spacings = [oriented_spacing_and_shape(channels[0])[0] for channels in cases_channels]
    return [float(v) for v in np.median(np.asarray(spacings), axis=0)]


def auto_patch_size(shapes_zyx: list[tuple[int, ...]], max_voxels: int) -> list[int]:
    """Median working shape, shrunk (largest axis first) to the voxel budget, rounded to multiples of 16."""
    patch = [max(DIVISOR, int(round(s / DIVISOR)) * DIVISOR) for s in np.median(np.asarray(shapes_zyx), axis=0)]
    while int(np.prod(patch)) > max_voxels:
        axis = int(np.argmax(patch))
        if patch[axis] <= DIVISOR:
            break
        patch[axis] -= DIVISOR
    return patch


def normalization_methods(config_value: str, channel_names: list[str]) -> list[str]:
    if config_value != "auto":
        return [config_value] * len(channel_names)
    return ["ct" if is_ct_channel(n) else "zscore_foreground" for n in channel_names]


def read_cases(cases: list[Case]) -> list[tuple]:
    """(id, channels, label) of each case, read once."""
    return [(case.id, *read_case(case)) for case in cases]


def prepare_cases(loaded: list[tuple], app: Application, spacing_xyz: list[float]) -> list[dict]:
    """Cases on the working grid: raw (not yet normalised) image arrays and raw targets."""
    prepared = []
    for case_id, channels, label in loaded:
        image, target, _ = to_working_grid(channels, label, spacing_xyz, app.target_is_label)
        prepared.append({"id": case_id, "image": image, "label": target})
    return prepared


def fit_normalization(train: list[dict], methods: list[str], target_is_label: bool) -> list[dict | None]:
    """Dataset-level statistics per channel (used by CT clipping); foreground = labelled voxels if any."""
    stats = []
    for c, method in enumerate(methods):
        if method != "ct":
            stats.append(None)
            continue
        masks = [(case["label"][0] > 0) if target_is_label and case["label"] is not None else None for case in train]
        stats.append(channel_statistics([case["image"][c] for case in train], masks))
    return stats


def finalize_cases(cases: list[dict], app: Application, methods: list[str], stats: list, target_stats: dict,
                   labels: dict[str, int], weighted: bool) -> list[dict]:
    """Normalise images and encode targets in place; add sampling weight maps when asked."""
    for case in cases:
        case["image"] = normalize_image(case["image"], methods, stats)
        case["label"] = app.encode_target(case["label"], target_stats, labels)
        if weighted:
            case["weight"] = inverse_frequency_weights(case["label"]) if app.target_is_label else \
                np.ones_like(case["label"], dtype=np.float32)
    return cases
