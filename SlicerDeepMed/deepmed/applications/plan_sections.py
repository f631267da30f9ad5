"""Each trainable application family's own entries of the plan, typed.

``plan.json`` keeps these entries at its top level (``Plan.specific``, written unchanged by the application's
``plan()``); an application reads them once as its section (``DensePlanSection.of(plan)``) and then by
attribute. The values are copies (the plan stays untouched) of the types the plan holds (lists, dicts), so
what is built from them, the model card included, is the same as before.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

from deepmed.errors import DeepMedError
from deepmed.planning.plan import PLAN_FILE, NetworkChoice

Section = TypeVar("Section")


def section_of(cls: type[Section], plan: Mapping) -> Section:
    """The entries ``cls`` names, read from ``plan`` (a ``Plan`` or the draft mapping an application made);
    a missing required entry is one DeepMedError naming plan.json and the key."""
    values: dict[str, Any] = {}
    for entry in fields(cls):
        if entry.name in plan:
            values[entry.name] = copy.deepcopy(plan[entry.name])
        elif entry.default is MISSING and entry.default_factory is MISSING:
            application = getattr(plan, "application", "")
            raise DeepMedError(f"{PLAN_FILE}: the {application + ' ' if application else ''}plan lacks the entry "
                               f"{entry.name!r} (has: {', '.join(getattr(plan, 'specific', plan)) or 'none'})")
    return cls(**values)


@dataclass(frozen=True)
class DensePlanSection:
    """Segmentation and image regression: the working grid, the patch and each channel's normalisation."""

    channel_names: list[str]
    spacing: list[float]            # x, y, z mm
    patch_size: list[int]           # x, y, z voxels
    normalization: list[str]        # one method per channel
    inference: dict = field(default_factory=dict)  # sliding-window settings for validation (optional)

    @classmethod
    def of(cls, plan: Mapping) -> DensePlanSection:
        return section_of(cls, plan)


@dataclass(frozen=True)
class CaseLevelPlanSection:
    """Classification and case regression: the whole image's input grid and each channel's normalisation."""

    channel_names: list[str]
    spacing: list[float]            # x, y, z mm
    input_size: list[int]           # x, y, z voxels
    normalization: list[str]

    @classmethod
    def of(cls, plan: Mapping) -> CaseLevelPlanSection:
        return section_of(cls, plan)


@dataclass(frozen=True)
class ClassesPlanSection:
    """Classification: the class names and the manifest's value of each (index = network output)."""

    classes: list[str]
    class_values: list[int] | None = None  # the planning draft may name the classes alone

    @classmethod
    def of(cls, plan: Mapping) -> ClassesPlanSection:
        return section_of(cls, plan)

    def values(self) -> list[int]:
        if self.class_values is None:
            raise DeepMedError(f"{PLAN_FILE}: the classification plan lacks the entry 'class_values'")
        return self.class_values


@dataclass(frozen=True)
class SuperResolutionPlanSection:
    """Super-resolution: the factor along the index axes and the low-resolution patch."""

    channel_names: list[str]
    factor: list[int]               # x, y, z
    patch_size: list[int]           # x, y, z low-resolution voxels

    @classmethod
    def of(cls, plan: Mapping) -> SuperResolutionPlanSection:
        return section_of(cls, plan)


@dataclass(frozen=True)
class AutoencoderPlanSection:
    """Autoencoder: the whole image's input size and the variational choice."""

    channel_names: list[str]
    input_size: list[int]           # x, y, z voxels
    variational: bool
    beta: float

    @classmethod
    def of(cls, plan: Mapping) -> AutoencoderPlanSection:
        return section_of(cls, plan)


@dataclass(frozen=True)
class AdamChoice:
    """One network's Adam optimiser of a conditional GAN."""

    name: str
    lr: float
    betas: list[float]

    @classmethod
    def from_json(cls, data: Mapping, key: str) -> AdamChoice:
        if not isinstance(data, Mapping) or any(k not in data for k in ("lr", "betas")):
            raise DeepMedError(f"{PLAN_FILE}: 'optimizers.{key}' must be a mapping with 'lr' and 'betas', "
                               f"got {data!r}")
        return cls(str(data.get("name", "adam")), data["lr"], list(data["betas"]))


@dataclass(frozen=True)
class ConditionalGanPlanSection:
    """Conditional GAN: the fixed output grid, the conditions' ranges, the discriminator, one Adam per network."""

    channel_names: list[str]
    grid: dict
    conditions: list[dict]          # {"name", "min", "max"[, "unit"]} each
    discriminator: dict             # {"name", "args"}
    optimizers: dict                # network name -> {"name", "lr", "betas"}

    @classmethod
    def of(cls, plan: Mapping) -> ConditionalGanPlanSection:
        return section_of(cls, plan)

    def discriminator_network(self) -> NetworkChoice:
        return NetworkChoice.from_json(self.discriminator)

    def optimizer(self, network: str) -> AdamChoice:
        if network not in self.optimizers:
            raise DeepMedError(f"{PLAN_FILE}: 'optimizers' lacks {network!r} (has: {', '.join(self.optimizers)})")
        return AdamChoice.from_json(self.optimizers[network], network)
