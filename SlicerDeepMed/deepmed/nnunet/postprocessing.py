"""nnU-Net's determined post-processing, read from ``postprocessing.json`` (never ``postprocessing.pkl``, a
pickle of functions) and applied as nnunetv2's ``apply_postprocessing`` does.

nnU-Net's ``determine_postprocessing`` tries "keep only the largest connected component", first of all foreground
together, then of each label (region), and keeps a step when it improved the cross-validation Dice. The json
names the steps (``postprocessing_fns``) and their arguments (``postprocessing_kwargs``: ``labels_or_regions``,
an int or a list; in json a region tuple is a list, and both mean the union of the values). The only function
nnU-Net ships is ``remove_all_but_largest_component_from_segmentation``; anything else is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from deepmed.errors import DeepMedError

KEEP_LARGEST = "remove_all_but_largest_component_from_segmentation"


def _values(labels_or_regions) -> list[int]:
    """``labels_or_regions`` flattened: an int, a region (list of ints) or a list of either."""
    if isinstance(labels_or_regions, bool):
        raise ValueError("a boolean")
    if isinstance(labels_or_regions, int):
        return [labels_or_regions]
    if isinstance(labels_or_regions, list) and labels_or_regions:
        return sorted({v for item in labels_or_regions for v in _values(item)})
    raise ValueError(f"{labels_or_regions!r}")


def read_postprocessing(path: Path) -> list[dict]:
    """The steps of a ``postprocessing.json``: ``[{"keep_largest_component_of": [labels]}, ...]`` in order."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        functions, arguments = document["postprocessing_fns"], document["postprocessing_kwargs"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DeepMedError(f"{path}: not an nnU-Net postprocessing.json ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(functions, list) or not isinstance(arguments, list) or len(functions) != len(arguments):
        raise DeepMedError(f"{path}: postprocessing_fns and postprocessing_kwargs must be lists of the same length")
    steps = []
    for function, kwargs in zip(functions, arguments):
        if function != KEEP_LARGEST:
            raise DeepMedError(f"{path}: post-processing function {function!r} is not one nnU-Net ships "
                               f"({KEEP_LARGEST})")
        if not isinstance(kwargs, dict) or set(kwargs) - {"labels_or_regions", "background_label"}:
            raise DeepMedError(f"{path}: {function} arguments {kwargs!r}: expected labels_or_regions")
        try:
            values = _values(kwargs.get("labels_or_regions"))
        except ValueError as exc:
            raise DeepMedError(f"{path}: labels_or_regions {exc}: expected an int or a list of ints") from None
        steps.append({"keep_largest_component_of": values, "background": int(kwargs.get("background_label", 0))})
    return steps


def keep_largest_component(segmentation: np.ndarray, values: list[int], background: int = 0) -> np.ndarray:
    """acvl_utils' ``remove_all_but_largest_component`` on the union of ``values``: full connectivity
    (scikit-image's default), every component of the largest size kept, the rest set to ``background``."""
    mask = np.isin(segmentation, values)
    labelled, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if count == 0:
        return segmentation
    sizes = np.bincount(labelled.ravel())[1:]
    keep = np.isin(labelled, np.flatnonzero(sizes == sizes.max()) + 1)
    result = segmentation.copy()
    result[mask & ~keep] = background
    return result


def apply_postprocessing(segmentation: np.ndarray, steps: list[dict]) -> np.ndarray:
    for step in steps:
        segmentation = keep_largest_component(segmentation, step["keep_largest_component_of"], step["background"])
    return segmentation
