"""What a prediction is asked for, as one typed value: the CLI, the API and the Slicer worker build it and the
Predictor reads it. ``None`` leaves a setting to the model card's inference section."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from deepmed.errors import DeepMedError


@dataclass(frozen=True)
class InferenceOptions:
    """Options of one prediction (see :meth:`deepmed.inference.predictor.Predictor.predict`)."""

    tta_flips: bool | None = None
    overlap: float | None = None
    keep_largest: bool | None = None
    probabilities: bool = False
    uncertainty: bool = False  # the entropy map alone (segmentation), without the probabilities
    precision: str | None = None
    mode: str | None = None
    condition: tuple[float, ...] | None = None
    steps: int | None = None
    count: int | None = None
    seed: int | None = None

    def __post_init__(self):
        if self.overlap is not None and not 0 <= self.overlap < 1:
            raise DeepMedError(f"overlap: expected a number in [0, 1), got {self.overlap}")
        if self.condition is not None:
            object.__setattr__(self, "condition", tuple(float(v) for v in self.condition))

    def with_probabilities(self) -> InferenceOptions:
        """The same options, also asking for class probabilities (and the uncertainty made from them)."""
        return dataclasses.replace(self, probabilities=True)

    def with_uncertainty(self) -> InferenceOptions:
        """The same options, also asking for the entropy map (one class in memory at a time)."""
        return dataclasses.replace(self, uncertainty=True)

    def as_kwargs(self) -> dict:
        """Keyword arguments of ``Predictor.predict``."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["condition"] = None if self.condition is None else list(self.condition)
        return values
