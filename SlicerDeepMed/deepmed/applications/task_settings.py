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
