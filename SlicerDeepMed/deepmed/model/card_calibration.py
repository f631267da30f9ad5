"""The model card's ``calibration`` section as typed values: how a segmentation's logits are scaled before the
softmax (temperature scaling), what it was fitted on, and the expected calibration error before and after.

    "calibration": {"method": "temperature", "temperature": 1.4, "fitted_on": ["c1", "c3"],
                    "voxels": "foreground_band", "band": 3, "samples": 40000,
                    "ece": {"bins": 15, "before": 0.12, "after": 0.04, "evaluated_on": "leave_one_case_out"}}

An ensemble's card also holds ``fold_temperatures`` (fold -> T, each fitted on that fold's own validation cases):
one fold run alone uses its own T; the ensemble applies ``temperature`` (their geometric mean) to the averaged
probabilities.
Importing this module never imports torch.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

#: what ``ece.evaluated_on`` says: the cases the ECE before/after was measured on
EVALUATED_ON = {
    "leave_one_case_out": "each validation case with a temperature fitted on the other validation cases",
    "fitted_cases": "the one validation case the temperature was fitted on (no held-out case)",
    "folds_mean": "mean of the folds' leave-one-case-out values, weighted by their voxels",
}


@dataclass(frozen=True)
class CalibrationError:
    """Expected calibration error (top-label, ``bins`` equal-width bins) before and after calibration."""

    before: float
    after: float
    bins: int = 15
    evaluated_on: str = "leave_one_case_out"

    @classmethod
    def from_dict(cls, entry: dict) -> CalibrationError:
        return cls(before=float(entry["before"]), after=float(entry["after"]), bins=int(entry.get("bins", 15)),
                   evaluated_on=entry.get("evaluated_on", "leave_one_case_out"))

    def to_dict(self) -> dict:
        return {"bins": self.bins, "before": self.before, "after": self.after, "evaluated_on": self.evaluated_on}


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling of a segmentation's logits (``softmax(logits / T)``)."""

    temperature: float
    method: str = "temperature"
    fold_temperatures: dict[str, float] = field(default_factory=dict)
    fitted_on: tuple[str, ...] = ()
    voxels: str = "foreground_band"
    band: int | None = None
    samples: int | None = None
    ece: CalibrationError | None = None
    document: dict | None = field(default=None, repr=False, compare=False)  # as read: written back unchanged

    @classmethod
    def from_dict(cls, entry: dict) -> Calibration:
        ece = entry.get("ece")
        return cls(temperature=float(entry["temperature"]), method=entry.get("method", "temperature"),
                   fold_temperatures={str(k): float(v) for k, v in (entry.get("fold_temperatures") or {}).items()},
                   fitted_on=tuple(entry.get("fitted_on") or ()), voxels=entry.get("voxels", "foreground_band"),
                   band=entry.get("band"), samples=entry.get("samples"),
                   ece=None if ece is None else CalibrationError.from_dict(ece), document=copy.deepcopy(entry))

    def to_dict(self) -> dict:
        if self.document is not None and Calibration.from_dict(self.document) == self:
            return copy.deepcopy(self.document)  # as read (keys, order), the values unchanged
        document: dict = {"method": self.method, "temperature": self.temperature}
        if self.fold_temperatures:
            document["fold_temperatures"] = dict(self.fold_temperatures)
        document["fitted_on"] = list(self.fitted_on)
        document["voxels"] = self.voxels
        for key in ("band", "samples"):
            if getattr(self, key) is not None:
                document[key] = getattr(self, key)
        if self.ece is not None:
            document["ece"] = self.ece.to_dict()
        return document

    def temperature_for(self, folds: list[int] | None = None) -> float:
        """The temperature for the members run: one fold of an ensemble alone has its own, else the model's."""
        if folds is not None and len(folds) == 1 and str(folds[0]) in self.fold_temperatures:
            return self.fold_temperatures[str(folds[0])]
        return self.temperature

    def summary(self) -> str:
        """One line for people: T and the ECE before -> after (and on which cases)."""
        text = f"temperature {self.temperature:.3g}"
        if self.ece is not None:
            text += (f"; ECE ({self.ece.bins} bins, {self.voxels.replace('_', ' ')} voxels) {self.ece.before:.4f} "
                     f"-> {self.ece.after:.4f} ({self.ece.evaluated_on.replace('_', ' ')})")
        return text


def ensemble_calibration(per_fold: dict[int, Calibration | None]) -> Calibration | None:
    """An ensemble's calibration from its folds': each fold keeps its own temperature (``fold_temperatures``,
    used when it runs alone), ``temperature`` (for the averaged probabilities) is their geometric mean, the ECE
    their voxel-weighted mean (``folds_mean``). None when a fold has none (the ensemble then runs as trained)."""
    if not per_fold or any(c is None for c in per_fold.values()):
        return None
    folds = list(per_fold.values())
    weights = [float(c.samples or 1) for c in folds]
    ece = None
    if all(c.ece is not None for c in folds):
        mean = lambda key: sum(w * getattr(c.ece, key) for w, c in zip(weights, folds)) / sum(weights)  # noqa: E731
        ece = CalibrationError(before=round(mean("before"), 6), after=round(mean("after"), 6), bins=folds[0].ece.bins,
                               evaluated_on="folds_mean")
    temperature = math.exp(sum(math.log(c.temperature) for c in folds) / len(folds))
    return Calibration(temperature=round(temperature, 6),
                       fold_temperatures={str(fold): c.temperature for fold, c in per_fold.items()},
                       fitted_on=tuple(case for c in folds for case in c.fitted_on), voxels=folds[0].voxels,
                       band=folds[0].band, samples=sum(c.samples or 0 for c in folds), ece=ece)
