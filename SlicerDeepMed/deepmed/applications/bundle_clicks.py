"""Clicks for a trusted interactive MONAI bundle (DeepEdit): the card's prompt settings, found at import in the
bundle's own preprocessing, and the clicks as the bundle's data dictionary takes them.

DeepEdit's inference (``monai.apps.deepedit.transforms.AddGuidanceFromPointsDeepEditd``, after the bundle's
``OrientationGuidanceMultipleLabelDeepEditd``) reads, per label name of its ``label_names``, a list of voxel
indices ``[i, j, k]`` of the input file as the bundle's reader gives them; positive clicks go under their
label's name, negative ones under the background's (the label whose value is 0). It takes no previous mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from deepmed.errors import DeepMedError
from deepmed.io.clicks import ClickSet

#: MONAI's transform that turns the data dictionary's per-label clicks into guidance.
DEEPEDIT_GUIDANCE = "AddGuidanceFromPointsDeepEditd"


@dataclass(frozen=True)
class BundleClicks:
    """The card's ``task.clicks`` of a bundle that takes clicks: the label names (data-dictionary keys) with
    their values, and the key of negative clicks (None: the bundle has no background label)."""

    labels: dict[str, int]
    negative_key: str | None

    @classmethod
    def of(cls, task: dict) -> BundleClicks | None:
        entry = (task or {}).get("clicks")
        if not isinstance(entry, dict):
            return None
        return cls({str(k): int(v) for k, v in entry["labels"].items()}, entry.get("negative_key"))

    def to_dict(self) -> dict:
        return {"format": "deepedit", "labels": dict(self.labels), "negative_key": self.negative_key}


def _steps(transform):
    """Every transform of a (nested) Compose."""
    for step in getattr(transform, "transforms", None) or ():
        yield from _steps(step) if hasattr(step, "transforms") else (step,)


def find_bundle_clicks(preprocessing) -> BundleClicks | None:
    """The prompt settings of a built preprocessing that adds DeepEdit guidance from clicks, else None."""
    for step in _steps(preprocessing):
        if type(step).__name__ == DEEPEDIT_GUIDANCE:
            labels = {str(k): int(v) for k, v in dict(step.label_names).items()}
            negative = next((name for name, value in labels.items() if value == 0), None)
            return BundleClicks(labels, negative)
    return None


def click_entries(clicks: ClickSet, reference: sitk.Image, label: str, prompt: BundleClicks
                  ) -> dict[str, list[list[int]]]:
    """The data-dictionary entries the bundle reads: per label name the voxel indices [i, j, k] (nearest voxel
    of the file ``reference`` was read from) of its clicks; one line naming a click outside the image, or a
    negative click when the bundle has no background label."""
    entries: dict[str, list[list[int]]] = {name: [] for name in prompt.labels}
    size = np.asarray(reference.GetSize())
    for number, click in enumerate(clicks.to_lps().clicks):
        index = np.rint(reference.TransformPhysicalPointToContinuousIndex(click.point)).astype(int)
        if np.any(index < 0) or np.any(index >= size):
            shown = ", ".join(f"{v:g}" for v in clicks.clicks[number].point)
            raise DeepMedError(f"clicks[{number}]: point ({shown}) {clicks.coordinates} lies outside the image "
                               f"(voxel index {', '.join(map(str, index))}; size {' x '.join(map(str, size))})")
        key = label if click.positive else prompt.negative_key
        if key is None:
            raise DeepMedError(f"clicks[{number}]: a negative click, but the bundle has no background label to put "
                               f"it under (labels: {', '.join(prompt.labels)})")
        entries[key].append([int(v) for v in index])
    return entries


def merge_refined(result: np.ndarray, previous: np.ndarray | None, value: int) -> np.ndarray:
    """The previous label map with one label's voxels taken from ``result`` (the others kept); ``result`` as is
    without a previous map."""
    if previous is None:
        return result
    merged = previous.astype(np.result_type(previous.dtype, result.dtype))
    merged[merged == value] = 0
    merged[result == value] = value
    return merged
