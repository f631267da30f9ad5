"""Read, orient, resample and normalise the cases of a voxel-wise task once (cached in memory for every epoch)."""

from __future__ import annotations

import numpy as np

from deepmed.data.case_io import read_case
from deepmed.data.manifest import Case
from deepmed.transforms.augmentation import inverse_frequency_weights
from deepmed.transforms.preprocessing import channel_statistics, is_ct_channel, normalize_image, to_working_grid


def normalization_methods(config_value: str, channel_names: list[str]) -> list[str]:
    if config_value != "auto":
        return [config_value] * len(channel_names)
    return ["ct" if is_ct_channel(n) else "zscore_foreground" for n in channel_names]


def read_cases(cases: list[Case]) -> list[tuple]:
    """(id, channels, label) of each case, read once."""
    return [(case.id, *read_case(case)) for case in cases]


def to_working_grids(loaded: list[tuple], spacing_xyz: list[float], discrete: bool) -> list[dict]:
    """Cases on the working grid: raw (not yet normalised) image arrays and raw targets."""
    prepared = []
    for case_id, channels, label in loaded:
        image, target, _ = to_working_grid(channels, label, spacing_xyz, discrete)
        prepared.append({"id": case_id, "image": image, "label": target})
    return prepared


def fit_normalization(train: list[dict], methods: list[str], discrete: bool) -> list[dict | None]:
    """Dataset-level statistics per channel (used by CT clipping); foreground = labelled voxels if any."""
    stats = []
    for c, method in enumerate(methods):
        if method != "ct":
            stats.append(None)
            continue
        masks = [(case["label"][0] > 0) if discrete and case["label"] is not None else None for case in train]
        stats.append(channel_statistics([case["image"][c] for case in train], masks))
    return stats


def finalize_cases(cases: list[dict], encode_target, methods: list[str], stats: list, weighted: bool,
                   discrete: bool) -> list[dict]:
    """Normalise images and encode targets in place; add sampling weight maps when asked."""
    for case in cases:
        case["image"] = normalize_image(case["image"], methods, stats)
        case["label"] = encode_target(case["label"])
        if weighted:
            case["weight"] = inverse_frequency_weights(case["label"]) if discrete else \
                np.ones_like(case["label"], dtype=np.float32)
    return cases
