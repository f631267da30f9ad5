"""``deepmed evaluate ... --probabilities FOLDER``: how calibrated written class probabilities are on held-out
cases, by the ECE of :mod:`deepmed.evaluation.calibration` (top-label, 15 bins, the foreground band: reference or
predicted foreground dilated by 3 voxels, here on the reference's grid).

Probability maps are ``deepmed infer --probabilities`` vector images (one component per class, in the order of
the label values, background first), matched to references by case id. Given the model that wrote them
(``--model``) with a temperature in its card, the probabilities before temperature scaling are recovered as
softmax(T * log p) (inference made them as p0 ** (1 / T), normalised: the inverse, up to probabilities below
1e-12), so that the ECE is printed before and after.
Bins are accumulated case by case: memory holds one case at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.errors import DeepMedError
from deepmed.evaluation.calibration import BAND_VOXELS, ECE_BINS, band_mask
from deepmed.io.geometry import grid_differences
from deepmed.io.image_io import read_image


@dataclass
class ReliabilityBins:
    """Per confidence bin: voxels, their summed confidence and their summed correctness (merged over cases)."""

    bins: int = ECE_BINS
    count: np.ndarray = field(default=None)
    confidence: np.ndarray = field(default=None)
    correct: np.ndarray = field(default=None)

    def __post_init__(self):
        for name in ("count", "confidence", "correct"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(self.bins, dtype=np.float64))

    def add(self, confidence: np.ndarray, correct: np.ndarray) -> ReliabilityBins:
        index = np.minimum((np.clip(confidence, 0.0, 1.0) * self.bins).astype(np.int64), self.bins - 1)
        self.count += np.bincount(index, minlength=self.bins)
        self.confidence += np.bincount(index, weights=confidence, minlength=self.bins)
        self.correct += np.bincount(index, weights=correct.astype(np.float64), minlength=self.bins)
        return self

    @property
    def voxels(self) -> int:
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        total = self.count.sum()
        return float(np.abs(self.confidence - self.correct).sum() / total) if total else 0.0


@dataclass
class ProbabilityCalibration:
    """ECE of the written probabilities (``after``) and, with a temperature, of those before scaling."""

    per_case: dict[str, dict[str, float]]
    after: ReliabilityBins
    before: ReliabilityBins | None = None
    temperature: float | None = None

    def summary(self) -> str:
        text = (f"calibration of the probabilities ({ECE_BINS} bins, foreground band of {BAND_VOXELS} voxels, "
                f"{self.after.voxels} voxels in {len(self.per_case)} case(s)): ECE {self.after.ece:.4f}")
        if self.before is not None:
            text += (f"\nbefore temperature scaling (T = {self.temperature:.3g}, from the model card): ECE "
                     f"{self.before.ece:.4f} -> after {self.after.ece:.4f}")
        return text


def _top_label(probabilities: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return probabilities.max(axis=1), probabilities.argmax(axis=1) == classes


def uncalibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(T * log p) of (N, C) probabilities: the softmax of the logits before they were divided by T."""
    scaled = temperature * np.log(np.clip(probabilities.astype(np.float64), 1e-12, 1.0))
    scaled -= scaled.max(axis=1, keepdims=True)
    np.exp(scaled, out=scaled)
    return scaled / scaled.sum(axis=1, keepdims=True)


def case_classes(reference: np.ndarray, label_values: list[int], where: str) -> np.ndarray:
    """Reference label values -> channel indices (the i-th value is channel i); unknown values are an error."""
    lookup = {v: i for i, v in enumerate(label_values)}
    values = np.unique(reference)
    unknown = [int(v) for v in values if int(v) not in lookup]
    if unknown:
        raise DeepMedError(f"{where}: reference label value(s) {unknown} have no probability channel (channels: "
                           f"label values {label_values})")
    classes = np.zeros(reference.shape, dtype=np.int64)
    for value in values:
        classes[reference == value] = lookup[int(value)]
    return classes


def evaluate_probabilities(pairs, folder: Path, label_values: list[int] | None = None,
                           temperature: float | None = None) -> ProbabilityCalibration:
    """The calibration of ``folder``'s probability maps against the references of ``pairs`` (evaluate's Pair:
    case, reference): per case ECE, and over all cases."""
    from deepmed.evaluation.evaluate import _images_by_id, _load

    folder = Path(folder)
    if not folder.is_dir():
        raise DeepMedError(f"{folder}: --probabilities expects a folder of probability maps (deepmed infer "
                           "--probabilities)")
    found = _images_by_id(folder)
    result = ProbabilityCalibration({}, ReliabilityBins(), ReliabilityBins() if temperature else None, temperature)
    for pair in pairs:
        if pair.case not in found:
            raise DeepMedError(f"{folder}: no probability map for case {pair.case} (expected {pair.case}.nii.gz)")
        reference, image = _load(pair.reference), read_image(found[pair.case])
        where = str(found[pair.case])
        differences = grid_differences(image, reference)
        if differences:
            raise DeepMedError(f"{where}: not on the reference's grid ({'; '.join(differences)})")
        channels = image.GetNumberOfComponentsPerPixel()
        values = label_values if label_values is not None and len(label_values) == channels else list(range(channels))
        if channels < 2:
            raise DeepMedError(f"{where}: expected a vector image of class probabilities, got {channels} component")
        classes = case_classes(sitk.GetArrayViewFromImage(reference), values, str(pair.reference))
        probabilities = sitk.GetArrayFromImage(image).reshape(-1, channels)
        mask = band_mask(classes, probabilities.argmax(axis=1).reshape(classes.shape)).ravel()
        probabilities, truth = probabilities[mask], classes.ravel()[mask]
        case = ReliabilityBins().add(*_top_label(probabilities, truth))
        result.after.add(*_top_label(probabilities, truth))
        result.per_case[pair.case] = {"ece": case.ece, "voxels": case.voxels}
        if temperature:
            before = uncalibrated(probabilities, temperature)
            result.before.add(*_top_label(before, truth))
            result.per_case[pair.case]["ece_uncalibrated"] = ReliabilityBins().add(*_top_label(before, truth)).ece
    return result
