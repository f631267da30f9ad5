"""The planning fingerprint of a dataset: oriented spacings and sizes per case, channels, label fractions."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from deepmed.transforms.preprocessing import oriented_spacing_and_shape


def fingerprint_of_cases(name: str, channel_names: list[str], labels: dict[str, int],
                         cases: list[tuple[list[sitk.Image], sitk.Image | None]]) -> dict:
    """What the planner needs from ``(channels, label)`` pairs of the training cases.

    Spacings and sizes are those of the LPS-oriented images (x, y, z), as the working grid sees them.
    ``label_fractions`` is each label's share of all labelled voxels (only when labels are declared).
    """
    spacings, sizes = [], []
    counts: dict[int, int] = {}
    for channels, label in cases:
        spacing, size = oriented_spacing_and_shape(channels[0])
        spacings.append(spacing)
        sizes.append(size)
        if labels and label is not None:
            values, n = np.unique(sitk.GetArrayViewFromImage(label), return_counts=True)
            for value, count in zip(values.tolist(), n.tolist()):
                counts[int(value)] = counts.get(int(value), 0) + int(count)
    spacing_array = np.asarray(spacings, dtype=np.float64)
    fingerprint = {
        "name": name,
        "cases": len(cases),
        "channel_names": list(channel_names),
        "spacing": {"median": np.median(spacing_array, axis=0).tolist(),
                    "p10": np.percentile(spacing_array, 10, axis=0).tolist()},
        "size": {"median": np.median(np.asarray(sizes, dtype=np.float64), axis=0).tolist()},
        "labels": dict(labels),
    }
    total = sum(counts.values())
    if labels and total:
        fingerprint["label_fractions"] = {name: counts.get(value, 0) / total for name, value in labels.items()}
    return fingerprint
