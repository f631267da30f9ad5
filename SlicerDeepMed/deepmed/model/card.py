"""The model card (``model_card.json``, format ``deepmed-model/1``) as a typed, frozen value.

``ModelCard.read(model_dir)`` and ``ModelCard.from_dict`` check the card against its JSON schema
(``zoo/schemas/model-card.schema.json``) and give one-line errors naming the file and the key path;
``to_dict`` gives back the JSON document, the keys it was read with kept (a round trip changes nothing).
The rules every reader shares live here: the output kind of cards written before the field existed, the
default mode, and whether given inputs fit a mode (:func:`check_inputs`, used by the Predictor and the
Slicer panels alike). Importing this module never imports torch: the Slicer GUI process reads cards.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from deepmed.errors import DeepMedError
from deepmed.model.card_calibration import Calibration
from deepmed.model.terminology import Terminology, check_snomed_agrees, label_terminology

CARD = "model_card.json"
WEIGHTS = "model.safetensors"
CARD_FORMAT = "deepmed-model/1"

__all__ = ["CARD", "CARD_FORMAT", "WEIGHTS", "Calibration", "Condition", "InputChannel", "Label", "Mode", "ModelCard",
           "Network", "Target", "check_inputs"]


def _present(document: dict, names) -> frozenset[str]:
    return frozenset(name for name in names if name in document)


def _emit(document: dict, key: str, value, present: frozenset[str], empty) -> None:
    """Write ``key`` when the card was read with it or it holds something (absent stays absent)."""
    if key in present or value != empty:
        document[key] = value


@dataclass(frozen=True)
class InputChannel:
    """One input image: its name, modality and how it is normalized (with the training statistics)."""

    name: str
    normalization: str
    modality: str | None = None
    statistics: dict | None = None
    assumptions: str | None = None
    present: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @classmethod
    def from_dict(cls, entry: dict) -> InputChannel:
        return cls(name=entry["name"], normalization=entry["normalization"], modality=entry.get("modality"),
                   statistics=copy.deepcopy(entry.get("statistics")), assumptions=entry.get("assumptions"),
                   present=_present(entry, ("modality", "statistics", "assumptions")))

    def to_dict(self) -> dict:
        document = {"name": self.name}
        _emit(document, "modality", self.modality, self.present, None)
        document["normalization"] = self.normalization
        _emit(document, "statistics", copy.deepcopy(self.statistics), self.present, None)
        _emit(document, "assumptions", self.assumptions, self.present, None)
        return document


@dataclass(frozen=True)
class Label:
    """One label value of a label map (0 is background), with its colour, SNOMED code and coded terminology
    (DICOM Segmentation category and type) when known; :attr:`codes` gives the terminology or its generic stand-in."""

    value: int
    name: str
    color: tuple[int, int, int] | None = None
    snomed: str | None = None
    terminology: Terminology | None = None

    @classmethod
    def from_dict(cls, entry: dict) -> Label:
        color, terms = entry.get("color"), entry.get("terminology")
        return cls(value=int(entry["value"]), name=entry["name"], color=tuple(color) if color else None,
                   snomed=entry.get("snomed"), terminology=None if terms is None else Terminology.from_dict(terms))

    @property
    def codes(self) -> Terminology:
        """The label's coded terminology, or the generic one (see :mod:`deepmed.model.terminology`)."""
        return label_terminology(self.name, self.snomed, self.terminology)

    def to_dict(self) -> dict:
        document: dict = {"value": self.value, "name": self.name}
        if self.color is not None:
            document["color"] = list(self.color)
        if self.snomed is not None:
            document["snomed"] = self.snomed
        if self.terminology is not None:
            document["terminology"] = self.terminology.to_dict()
        return document


@dataclass(frozen=True)
class Mode:
    """What a model can be asked for: ``deepmed infer --mode NAME`` (its inputs and output kind)."""

    name: str
    output_kind: str
    inputs: str = "images"
    description: str | None = None

    @classmethod
    def from_dict(cls, entry: dict) -> Mode:
        return cls(name=entry["name"], output_kind=entry["output_kind"], inputs=entry["inputs"],
                   description=entry.get("description"))

    def to_dict(self) -> dict:
        document = {"name": self.name, "output_kind": self.output_kind, "inputs": self.inputs}
        if self.description is not None:
            document["description"] = self.description
        return document


@dataclass(frozen=True)
class Condition:
    """A named case-level value a conditional generator is given (with its training range)."""

    name: str
    min: float | None = None
    max: float | None = None
    unit: str | None = None

    @classmethod
    def from_dict(cls, entry: dict) -> Condition:
        return cls(name=entry["name"], min=entry.get("min"), max=entry.get("max"), unit=entry.get("unit"))

    def to_dict(self) -> dict:
        document: dict = {"name": self.name}
        for key in ("min", "max", "unit"):
            if getattr(self, key) is not None:
                document[key] = getattr(self, key)
        return document


@dataclass(frozen=True)
class Network:
    """The network, named from the engine's registry, with its constructor arguments (plain data)."""

    name: str
    args: dict

    def to_dict(self) -> dict:
        return {"name": self.name, "args": copy.deepcopy(self.args)}


@dataclass(frozen=True)
class Target:
    """What a regression predicts: the training statistics of the target, its quantity and unit."""

    statistics: dict | None = None
    quantity: str | None = None
    unit: str | None = None

    def to_dict(self) -> dict:
        return {key: copy.deepcopy(getattr(self, key)) for key in ("statistics", "quantity", "unit")
                if getattr(self, key) is not None}


#: Top-level keys the card keeps as plain-data sections (dicts), empty when absent.
SECTIONS = ("source", "inference", "training", "task", "postprocessing", "cross_validation", "validation",
            "trusted_code", "settings", "memory")
#: Top-level text keys, None when absent.
TEXTS = ("id", "version", "title", "description", "output_kind", "engine_version", "created", "licence",
         "citation", "intended_use", "orientation", "array_axes")


@dataclass(frozen=True)
class ModelCard:
    """What a model is, expects and outputs (``model_card.json``). Build one with :meth:`from_dict` or
    :meth:`read`; change one with :meth:`with_values` (a new card)."""

    application: str
    inputs: tuple[InputChannel, ...]
    format: str = CARD_FORMAT
    id: str | None = None
    version: str | None = None
    title: str | None = None
    description: str | None = None
    output_kind: str | None = None  # as stored; ``kind`` is what readers use
    engine_version: str | None = None
    created: str | None = None
    licence: str | None = None
    citation: str | None = None
    intended_use: str | None = None
    orientation: str | None = None
    array_axes: str | None = None
    authors: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    labels: tuple[Label, ...] = ()
    target: Target | None = None
    spacing: tuple[float, float, float] | None = None
    patch_size: tuple[int, int, int] | None = None
    network: Network | None = None
    folds: tuple[int, ...] = ()
    fold_inputs: dict[str, tuple[InputChannel, ...]] = field(default_factory=dict)
    modes: tuple[Mode, ...] = ()
    conditions: tuple[Condition, ...] = ()
    output_grid: dict | None = None
    trust_code: bool | None = None
    trainable_as: tuple[str, ...] = ()
    calibration: Calibration | None = None  # temperature scaling of a segmentation's logits
    source: dict = field(default_factory=dict)
    inference: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    task: dict = field(default_factory=dict)
    postprocessing: dict = field(default_factory=dict)
    cross_validation: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    trusted_code: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # keys the schema allows that this class does not name
    present: tuple[str, ...] = field(default=(), repr=False, compare=False)  # the keys read, in order

    # ---- reading and writing ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, document, where: str = "model card") -> ModelCard:
        """A card from its JSON document, checked against the schema (DeepMedError naming ``where``)."""
        check_schema(document, where)
        card = cls._parse(document)
        for index, label in enumerate(card.labels):
            check_snomed_agrees(f"{where}: at labels/{index}", label.snomed, label.terminology)
        return card

    @classmethod
    def _parse(cls, document: dict) -> ModelCard:
        known = {f.name for f in fields(cls)} - {"extra", "present"}
        values: dict[str, Any] = {key: document.get(key) for key in TEXTS}
        values.update({key: copy.deepcopy(document.get(key) or {}) for key in SECTIONS})
        network, target = document.get("network"), document.get("target")
        values.update(
            application=document["application"], format=document["format"],
            inputs=tuple(InputChannel.from_dict(c) for c in document["inputs"]),
            authors=tuple(document.get("authors") or ()), references=tuple(document.get("references") or ()),
            labels=tuple(Label.from_dict(label) for label in document.get("labels") or ()),
            target=None if target is None else Target(copy.deepcopy(target.get("statistics")), target.get("quantity"),
                                                      target.get("unit")),
            spacing=tuple(document["spacing"]) if "spacing" in document else None,
            patch_size=tuple(document["patch_size"]) if "patch_size" in document else None,
            network=None if network is None else Network(network["name"], copy.deepcopy(network["args"])),
            folds=tuple(document.get("folds") or ()),
            fold_inputs={fold: tuple(InputChannel.from_dict(c) for c in channels)
                         for fold, channels in (document.get("fold_inputs") or {}).items()},
            modes=tuple(Mode.from_dict(m) for m in document.get("modes") or ()),
            conditions=tuple(Condition.from_dict(c) for c in document.get("conditions") or ()),
            output_grid=copy.deepcopy(document.get("output_grid")), trust_code=document.get("trust_code"),
            trainable_as=tuple(document.get("trainable_as") or ()),
            calibration=None if document.get("calibration") is None else Calibration.from_dict(document["calibration"]),
            extra={k: copy.deepcopy(v) for k, v in document.items() if k not in known},
            present=tuple(document))
        return cls(**values)

    def to_dict(self) -> dict:
        """The JSON document (keys in the order the card was read with; new keys after)."""
        values = {
            "format": self.format, "application": self.application,
            **{key: getattr(self, key) for key in TEXTS},
            "authors": list(self.authors), "references": list(self.references),
            "inputs": [c.to_dict() for c in self.inputs], "labels": [label.to_dict() for label in self.labels],
            "target": None if self.target is None else self.target.to_dict(),
            "spacing": None if self.spacing is None else list(self.spacing),
            "patch_size": None if self.patch_size is None else list(self.patch_size),
            "network": None if self.network is None else self.network.to_dict(),
            "folds": list(self.folds),
            "fold_inputs": {fold: [c.to_dict() for c in channels] for fold, channels in self.fold_inputs.items()},
            "modes": [m.to_dict() for m in self.modes], "conditions": [c.to_dict() for c in self.conditions],
            "output_grid": self.output_grid, "trust_code": self.trust_code, "trainable_as": list(self.trainable_as),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            **{key: getattr(self, key) for key in SECTIONS}, **self.extra}
        empty = {key: None for key in (*TEXTS, "target", "spacing", "patch_size", "network", "output_grid",
                                       "trust_code", "calibration")}
        document: dict = {}
        order = [key for key in self.present if key in values] + [key for key in values if key not in self.present]
        for key in order:
            value = values[key]
            _emit(document, key, copy.deepcopy(value), frozenset(self.present),
                  empty.get(key, {} if isinstance(value, dict) else []))
        for key in ("format", "application", "inputs"):
            document.setdefault(key, values[key])
        return document

    @classmethod
    def read(cls, model_dir: str | Path, need_weights: bool = True) -> ModelCard:
        """The card of a model directory; one-line errors for a missing directory, card, weights or a card
        that fails its schema (the message names the file and the key path)."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise DeepMedError(f"{model_dir}: model directory not found")
        path = model_dir / CARD
        if not path.is_file():
            raise DeepMedError(f"{model_dir}: not a deepmed model directory ({CARD} missing)")
        card = cls.read_file(path)
        if need_weights and not (model_dir / WEIGHTS).is_file():
            raise DeepMedError(f"{model_dir}: {WEIGHTS} missing (training never finished an epoch?)")
        return card

    @classmethod
    def read_file(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DeepMedError(f"{path}: JSON syntax error at line {exc.lineno}, column {exc.colno}: "
                               f"{exc.msg}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DeepMedError(f"{path}: cannot read the model card ({exc})") from None
        if isinstance(document, dict) and document.get("format") != CARD_FORMAT:
            raise DeepMedError(f"{path}: at format: expected {CARD_FORMAT!r}, got {document.get('format')!r}")
        return cls.from_dict(document, str(path))

    def write(self, model_dir: str | Path) -> Path:
        """Write ``model_dir/model_card.json`` (atomically), checked against the schema first."""
        from deepmed.utils.atomic import write_text_atomic

        path = Path(model_dir) / CARD
        document = self.to_dict()
        check_schema(document, str(path))
        return write_text_atomic(path, json.dumps(document, indent=2) + "\n")

    def with_values(self, **changes) -> ModelCard:
        """A new card with ``changes`` (attribute names); the original is unchanged."""
        return replace(self, **changes)

    # ---- the rules every reader shares --------------------------------------------------------------
    @property
    def kind(self) -> str:
        """The output kind: the card's; cards written before the field existed: a model with labels besides
        background makes label maps, one without a scalar volume."""
        return self.output_kind or ("label_map" if self.foreground_labels else "scalar_volume")

    @property
    def foreground_labels(self) -> tuple[Label, ...]:
        return tuple(label for label in self.labels if label.value != 0)

    @property
    def channel_names(self) -> list[str]:
        return [channel.name for channel in self.inputs]

    @property
    def available_modes(self) -> tuple[Mode, ...]:
        """The card's modes; one ``predict`` mode on images when it names none."""
        return self.modes or (Mode("predict", self.kind, "images"),)

    def mode(self, name: str | None = None, where: str = "model") -> Mode:
        """The mode called ``name`` (default: the first); DeepMedError names the model's modes."""
        modes = self.available_modes
        for mode in modes:
            if name is None or mode.name == name:
                return mode
        raise DeepMedError(f"{where}: has no mode '{name}' (modes: {', '.join(m.name for m in modes)})")

    def accepts_training_of(self, application: str) -> bool:
        """Whether a training of ``application`` can start from this model (its own, or ``trainable_as``)."""
        return self.application == application or application in self.trainable_as

    def label_dicts(self) -> list[dict]:
        """The labels as the writers of segmentations take them ({value, name, color})."""
        return [label.to_dict() for label in self.labels]


def check_inputs(card: ModelCard, mode: Mode, inputs: int, condition, where: str = "model") -> None:
    """One-line DeepMedError when ``inputs`` files (and ``condition`` values) do not fit ``mode``: one case's
    images (with clicks), none, a pair of cases, or condition values."""
    channels = len(card.inputs)
    expected = {"images": channels, "clicks": channels, "pair": 2 * channels, "none": 0, "conditions": 0}[mode.inputs]
    if inputs != expected and mode.inputs in ("images", "clicks"):
        raise DeepMedError(f"{where}: expects {channels} input channel(s) ({', '.join(card.channel_names)}), "
                           f"got {inputs}")
    if inputs != expected:
        what = {"pair": f"two cases of {channels} image(s) each", "none": "no input image",
                "conditions": "no input image (give --condition)"}[mode.inputs]
        raise DeepMedError(f"{where}: mode '{mode.name}' takes {what}, got {inputs} file(s)")
    if mode.inputs == "conditions":
        names = [c.name for c in card.conditions]
        if condition is None or len(condition) != len(names):
            got = "none" if condition is None else f"{len(condition)} value(s)"
            raise DeepMedError(f"{where}: mode '{mode.name}' needs {len(names)} condition value(s) "
                               f"({', '.join(names)}), got {got}")


def check_schema(document, where: str) -> None:
    """DeepMedError when ``document`` fails the model-card schema: the file, the first key path, expected vs
    got (and how many other problems)."""
    from deepmed.utils.json_schema import CARD_SCHEMA, schema_problems

    if not isinstance(document, dict):
        raise DeepMedError(f"{where}: expected a JSON object (a model card), got {type(document).__name__}")
    problems = schema_problems(document, CARD_SCHEMA)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise DeepMedError(f"{where}: model card fails its schema {problems[0]}{more}")
