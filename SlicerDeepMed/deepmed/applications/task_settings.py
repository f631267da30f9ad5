"""Each trainable application family's ``task:`` section of a resolved configuration, typed.

The resolved configuration holds every key of the application's ``config_defaults`` (``training.config``
merges and checks them); these types read it once, by attribute. The values keep the configuration's own
types: conversions stay where the values are used, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from deepmed.errors import DeepMedError

Settings = TypeVar("Settings")


def task_section(cls: type[Settings], config: Mapping) -> Settings:
    """The ``task:`` keys ``cls`` names; a missing one is one DeepMedError naming the key."""
    section = config.get("task") or {}
    missing = [entry.name for entry in fields(cls) if entry.name not in section]
    if missing:
        raise DeepMedError(f"config: 'task' lacks {', '.join(f'task.{k}' for k in missing)} "
                           "(a configuration resolved for this application has them)")
    return cls(**{entry.name: section[entry.name] for entry in fields(cls)})


@dataclass(frozen=True)
class ClassificationTask:
    classes: list            # class names; [] = the manifest's labels
    balanced_sampling: bool

    @classmethod
    def from_config(cls, config: Mapping) -> ClassificationTask:
        return task_section(cls, config)


@dataclass(frozen=True)
class CaseRegressionTask:
    quantity: str  # what the value is (shown in the card), "" = unnamed
    unit: str

    @classmethod
    def from_config(cls, config: Mapping) -> CaseRegressionTask:
        return task_section(cls, config)

    def card_target(self) -> dict:
        """The named ones of quantity and unit (as the card's ``target`` has them)."""
        return {key: value for key, value in (("quantity", self.quantity), ("unit", self.unit)) if value}


@dataclass(frozen=True)
class SuperResolutionTask:
    factor: Any  # [x, y, z] integers (checked by check_factor)

    @classmethod
    def from_config(cls, config: Mapping) -> SuperResolutionTask:
        return task_section(cls, config)


@dataclass(frozen=True)
class AutoencoderTask:
    input_size: Any          # [] or "auto" (planned) or [x, y, z]
    latent_size: int
    variational: bool
    beta: float
    channels: list

    @classmethod
    def from_config(cls, config: Mapping) -> AutoencoderTask:
        return task_section(cls, config)


@dataclass(frozen=True)
class ConditionalGanTask:
    conditions: list
    units: list
    image_size: int
    latent_dim: int
    generator_channels: int
    discriminator_channels: int
    generator_lr: float
    discriminator_lr: float
    reconstruction_weight: float
    auxiliary_weight: float

    @classmethod
    def from_config(cls, config: Mapping) -> ConditionalGanTask:
        return task_section(cls, config)


@dataclass(frozen=True)
class InteractiveTask:
    sigma_mm: float          # width of a click's Gaussian blob in mm; 0: twice the mean working spacing
    auto_fraction: float     # share of training samples without clicks (the model also segments automatically)
    max_rounds: int          # click rounds simulated with the network's own prediction (DeepEdit-style)
    validation_clicks: int   # simulated clicks per label and validation case (the key metric is after them)
    region_size: list        # x, y, z working-grid voxels a click computes at inference

    @classmethod
    def from_config(cls, config: Mapping) -> InteractiveTask:
        return task_section(cls, config)

    def check(self) -> None:
        """One DeepMedError naming the first key out of its range."""
        problems = [(key, expected, value) for key, expected, value, ok in (
            ("sigma_mm", "a number >= 0 (0: auto)", self.sigma_mm, float(self.sigma_mm) >= 0),
            ("auto_fraction", "a number in [0, 1]", self.auto_fraction, 0 <= float(self.auto_fraction) <= 1),
            ("max_rounds", "an integer >= 0", self.max_rounds, int(self.max_rounds) >= 0),
            ("validation_clicks", "an integer >= 0", self.validation_clicks, int(self.validation_clicks) >= 0),
            ("region_size", "three positive integers [x, y, z]", self.region_size,
             isinstance(self.region_size, list) and len(self.region_size) == 3
             and all(isinstance(v, int) and v > 0 for v in self.region_size))) if not ok]
        if problems:
            key, expected, value = problems[0]
            raise DeepMedError(f"config: task.{key} must be {expected}, got {value!r}")
