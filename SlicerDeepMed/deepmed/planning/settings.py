"""The configuration's sections that planning and training read, typed (made from the resolved configuration,
which ``deepmed.training.config`` validates): attributes instead of ``config["training"]["..."]``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deepmed.utils.auto import AUTO


@dataclass(frozen=True)
class TrainingSettings:
    """``training:`` of a resolved configuration."""

    epochs: int
    batch_size: int | str  # or "auto": planned by the application
    iterations_per_epoch: int  # 0: planned
    val_every: int             # 0: auto
    time_limit: Any            # seconds or "10m" (parse_duration)
    val_fraction: float
    early_stopping: int
    seed: int
    device: str
    amp: str
    fold: int | None = None
    init: str | None = None
    init_fold: int | None = None
    init_lr_factor: float = 0.2

    @classmethod
    def from_config(cls, config: Mapping) -> TrainingSettings:
        section = config["training"]
        return cls(**{name: section[name] for name in cls.__dataclass_fields__ if name in section})

    @property
    def amp_enabled(self) -> bool:
        return self.amp != "off"


@dataclass(frozen=True)
class OptimizerSettings:
    """``optimizer:`` and ``scheduler:`` of a resolved configuration."""

    name: str
    lr: float | str  # or "auto": planned by the application
    weight_decay: float
    lr_schedule: str

    @classmethod
    def from_config(cls, config: Mapping) -> OptimizerSettings:
        section = config["optimizer"]
        return cls(section["name"], section["lr"], section["weight_decay"], config["scheduler"]["name"])


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.lower() == AUTO


@dataclass(frozen=True)
class DataSettings:
    """``data:`` of a resolved configuration (``auto``: planned from the fingerprint)."""

    spacing: list | str
    patch_size: list | str
    max_patch_voxels: int
    normalization: str
    sampling: str
    foreground_ratio: float
    samples_per_case: int
    num_workers: int

    @classmethod
    def from_config(cls, config: Mapping) -> DataSettings:
        section = config["data"]
        return cls(**{name: section[name] for name in cls.__dataclass_fields__})

    @property
    def spacing_planned(self) -> bool:
        return is_auto(self.spacing)

    @property
    def patch_planned(self) -> bool:
        return is_auto(self.patch_size)


@dataclass(frozen=True)
class ComponentSettings:
    """``network:`` or ``loss:`` of a resolved configuration: a registered name (or ``auto``) and arguments."""

    name: str
    args: Mapping[str, Any]

    @classmethod
    def network(cls, config: Mapping) -> ComponentSettings:
        return cls(config["network"]["name"], dict(config["network"]["args"]))

    @classmethod
    def loss(cls, config: Mapping) -> ComponentSettings:
        return cls(config["loss"]["name"], dict(config["loss"]["args"]))

    def chosen(self, default: str) -> str:
        """The configured name, or ``default`` (the application's) where the configuration says auto."""
        return default if is_auto(self.name) else self.name


@dataclass(frozen=True)
class InferenceSettings:
    """``inference:`` of a resolved configuration (what a trained model's card keeps for running it)."""

    overlap: float
    sw_batch_size: int
    tta_flips: bool
    keep_largest: bool
    precision: str

    @classmethod
    def from_config(cls, config: Mapping) -> InferenceSettings:
        section = config["inference"]
        return cls(**{name: section[name] for name in cls.__dataclass_fields__})

    def to_json(self) -> dict:
        """The section as the card's ``inference`` (the configuration's keys, in its order)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def application_name(config: Mapping) -> str:
    """The application a resolved configuration names (``app:``)."""
    return str(config["app"])
