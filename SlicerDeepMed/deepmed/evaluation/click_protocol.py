"""The literature's click protocol on held-out cases: for each case and label, start from the model's
automatic mask (0 clicks), place the next click at the centre of the largest error region
(``deepmed.interactive.simulate.next_click``), refine with all clicks so far, and repeat up to N clicks.

The refinement is any callable ``refine(image, clicks, previous, label) -> mask`` (boolean, z-y-x, on the
image grid), so the protocol is the same for a trained model (``session_refine``) and for a test oracle.
Clicks reach it as physical LPS points made from the voxel index with the image's own geometry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.errors import DeepMedError
from deepmed.evaluation.click_curves import DEFAULT_MAX_CLICKS, ClickCurve, ClickCurveResult, PlacedClick
from deepmed.evaluation.segmentation_metrics import binary_metrics
from deepmed.io.clicks import Click, ClickSet
from deepmed.transforms.click_simulation import next_click

ImageInput = sitk.Image | Sequence[sitk.Image]  # one channel, or the channels of a multi-channel case
Refine = Callable[[ImageInput, ClickSet, "np.ndarray | None", str], np.ndarray]


def _reference(image: ImageInput) -> sitk.Image:
    return image if isinstance(image, sitk.Image) else image[0]


def _as_mask(result, shape: tuple[int, ...], label: str, clicks: int) -> np.ndarray:
    array = sitk.GetArrayViewFromImage(result) if isinstance(result, sitk.Image) else np.asarray(result)
    if array.shape != shape:
        raise DeepMedError(f"label {label}, {clicks} click(s): the refined mask is not on the image grid "
                           f"(expected shape z,y,x {shape}, got {array.shape})")
    return array.astype(bool)


def click_curve(image: ImageInput, truth: np.ndarray, label: str, refine: Refine,
                max_clicks: int = DEFAULT_MAX_CLICKS, case: str = "case", use_previous: bool = True) -> ClickCurve:
    """Dice after 0..``max_clicks`` simulated clicks for one label of one case; ``truth`` is its boolean mask.
    When the prediction equals the truth no further click is placed and the Dice stays (1.0)."""
    reference = _reference(image)
    truth = np.asarray(truth, dtype=bool)
    shape = tuple(reference.GetSize()[::-1])
    if truth.shape != shape:
        raise DeepMedError(f"case {case}: the truth of label {label} is not on the image grid "
                           f"(expected shape z,y,x {shape}, got {truth.shape})")
    spacing_zyx = tuple(reference.GetSpacing()[::-1])
    placed: list[PlacedClick] = []
    seconds: list[float] = []

    def run(previous: np.ndarray | None) -> np.ndarray:
        clicks = ClickSet(tuple(Click(p.point_lps, p.positive, label) for p in placed), "LPS")
        started = time.perf_counter()
        mask = _as_mask(refine(image, clicks, previous if use_previous else None, label), shape, label, len(placed))
        seconds.append(time.perf_counter() - started)
        return mask

    prediction = run(None)
    dice = [_dice(truth, prediction, spacing_zyx)]
    while len(placed) < max_clicks:
        click = next_click(prediction, truth, spacing_zyx)
        if click is None:
            break
        index_xyz = tuple(int(i) for i in click.index_zyx[::-1])
        point = tuple(float(v) for v in reference.TransformIndexToPhysicalPoint(index_xyz))
        placed.append(PlacedClick(tuple(click.index_zyx), point, click.positive))
        prediction = run(prediction)
        dice.append(_dice(truth, prediction, spacing_zyx))
    dice += [dice[-1]] * (max_clicks + 1 - len(dice))  # a perfect mask: later clicks change nothing
    return ClickCurve(case=case, label=label, dice=tuple(dice), clicks=tuple(placed), seconds=tuple(seconds))


def _dice(truth: np.ndarray, prediction: np.ndarray, spacing_zyx) -> float:
    return binary_metrics(truth, prediction, spacing_zyx, distances=False)["dice"]


def evaluate_click_curves(dataset, refine: Refine, labels: Sequence[str], max_clicks: int = DEFAULT_MAX_CLICKS,
                          use_previous: bool = True, case_ids: Sequence[str] | None = None,
                          log: Callable[[str], None] | None = None) -> ClickCurveResult:
    """The protocol on the held-out (``test``) cases of a manifest, or on all labelled cases when it has none
    (or on ``case_ids``), for each of ``labels`` (names of the manifest's labels) present in a case."""
    from deepmed.data.case_io import read_case
    from deepmed.data.manifest import Dataset

    if max_clicks < 1:
        raise DeepMedError(f"--max-clicks: expected at least 1, got {max_clicks}")
    data = dataset if isinstance(dataset, Dataset) else Dataset.load(Path(dataset))
    where = data.source or dataset
    unknown = [name for name in labels if name not in data.labels]
    if unknown:
        raise DeepMedError(f"{where}: label(s) {', '.join(unknown)} not in the dataset "
                           f"(expected some of: {', '.join(n for n, v in data.labels.items() if v)})")
    cases = [c for c in (data.test or data.training) if c.label is not None]
    if case_ids is not None:
        cases = [data.case(i) for i in case_ids]
    if not cases:
        raise DeepMedError(f"{where}: no labelled case to place clicks on (expected 'test' cases with labels)")
    curves = []
    for case in cases:
        channels, truth = read_case(case)
        if truth is None:
            raise DeepMedError(f"{where}: case {case.id} has no label")
        truth_array = sitk.GetArrayFromImage(truth)
        image = channels[0] if len(channels) == 1 else channels
        for name in labels:
            mask = truth_array == data.labels[name]
            if not mask.any():
                continue  # the structure is absent in this case: nothing to click on
            curve = click_curve(image, mask, name, refine, max_clicks, case.id, use_previous)
            if log is not None:
                log(f"{case.id} {name}: Dice {curve.dice[0]:.3f} -> {curve.dice[-1]:.3f} after {max_clicks} clicks")
            curves.append(curve)
    return ClickCurveResult(curves, max_clicks=max_clicks)


def session_refine(session) -> Refine:
    """The protocol's ``refine`` for an ``InteractiveSession`` (a loaded interactive model): the previous mask
    goes in as a label map of the refined label, and the refined label's voxels come back."""
    values = {entry.name: int(entry.value) for entry in session.predictor.card.foreground_labels}

    def refine(image: ImageInput, clicks: ClickSet, previous: np.ndarray | None, label: str) -> np.ndarray:
        previous_map = None
        if previous is not None:
            previous_map = sitk.GetImageFromArray(previous.astype(np.uint16 if values[label] > 255 else np.uint8)
                                                  * values[label])
            previous_map.CopyInformation(_reference(image))
        result = session.refine(image, clicks, previous=previous_map, label=label)
        return sitk.GetArrayViewFromImage(result.labels) == values[label]

    return refine
