"""``pipeline.json`` of an ONNX export (format ``deepmed-onnx/1``): the pipeline around the network(s), typed.

What a deployment outside the engine needs to run the ONNX files as the engine does: input channels and their
normalisation (per fold), the working grid (spacing, orientation, axis order), the sliding window (patch,
overlap, blending, flips), the activation, how the output is decoded, post-processing and labels. The values
are the model card's; :meth:`OnnxPipeline.card` gives them back as a card, so ``deepmed infer`` runs an export
through the very pre/post-processing of the torch path. Reading checks the version and the JSON schema
(``zoo/schemas/onnx-export.schema.json``) and names the file and the key on a problem. No torch import here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.model.card import CARD, CARD_FORMAT, InputChannel, Label, ModelCard
from deepmed.utils.json_files import read_json_object

EXPORT_FORMAT = "deepmed-onnx/1"
PIPELINE = "pipeline.json"
EXPORT_SCHEMA = "onnx-export.schema.json"

__all__ = ["EXPORT_FORMAT", "PIPELINE", "NetworkFile", "OnnxPipeline", "SlidingWindow", "is_onnx_export"]


def is_onnx_export(folder: str | Path) -> bool:
    """A folder written by ``deepmed export --format onnx`` (a pipeline, no model card)."""
    folder = Path(folder)
    return (folder / PIPELINE).is_file() and not (folder / CARD).is_file()


def _channels(entries) -> tuple[InputChannel, ...]:
    return tuple(InputChannel.from_dict(entry) for entry in entries)


@dataclass(frozen=True)
class NetworkFile:
    """One ONNX network: its file, fold (None for a single model), tensor names and the normalisation it expects."""

    file: str
    fold: int | None
    input_name: str
    output_name: str
    dynamic_spatial_axes: bool
    input_channels: tuple[InputChannel, ...]

    def to_dict(self) -> dict:
        return {"file": self.file, "fold": self.fold, "input_name": self.input_name, "output_name": self.output_name,
                "dynamic_spatial_axes": self.dynamic_spatial_axes,
                "input_channels": [c.to_dict() for c in self.input_channels]}

    @classmethod
    def from_dict(cls, entry: dict) -> NetworkFile:
        return cls(entry["file"], entry["fold"], entry["input_name"], entry["output_name"],
                   entry["dynamic_spatial_axes"], _channels(entry["input_channels"]))


@dataclass(frozen=True)
class SlidingWindow:
    overlap: float
    sw_batch_size: int
    blend_mode: str
    tta_flips: bool

    def to_dict(self) -> dict:
        return {"overlap": self.overlap, "sw_batch_size": self.sw_batch_size, "blend_mode": self.blend_mode,
                "tta_flips": self.tta_flips}


@dataclass(frozen=True)
class OnnxPipeline:
    """The pipeline of an export (see the module docstring); build one with :meth:`from_card` or :meth:`read`."""

    model: dict  # id, version, title, application, output_kind
    networks: tuple[NetworkFile, ...]
    input_channels: tuple[InputChannel, ...]
    spacing: tuple[float, float, float]
    orientation: str
    array_axes: str
    patch_size: tuple[int, int, int]
    out_channels: int
    sliding_window: SlidingWindow
    activation: str
    decode: str
    keep_largest: tuple[int, ...]
    labels: tuple[Label, ...]
    exported: dict
    target: dict = field(default_factory=dict)
    architecture: dict = field(default_factory=dict)
    format: str = EXPORT_FORMAT

    @classmethod
    def from_card(cls, card: ModelCard, networks: list[NetworkFile], keep_largest: list[int] | None,
                  activation: str, decode: str, exported: dict) -> OnnxPipeline:
        """The pipeline of a voxel-wise model: the card's values; ``keep_largest``, ``activation`` and ``decode``
        as the application states them."""
        settings = card.inference
        return cls(
            model={"id": card.id, "version": card.version, "title": card.title, "application": card.application,
                   "output_kind": card.kind},
            networks=tuple(networks), input_channels=card.inputs, spacing=tuple(card.spacing),
            orientation=card.orientation or "LPS", array_axes=card.array_axes or "zyx",
            patch_size=tuple(card.patch_size), out_channels=int(card.network.args["out_channels"]),
            sliding_window=SlidingWindow(
                float(settings.get("overlap", 0.5)), int(settings.get("sw_batch_size", 2)),
                settings.get("blend_mode", "gaussian"), bool(settings.get("tta_flips", False))),
            activation=activation, decode=decode,
            keep_largest=tuple(keep_largest or ()), labels=card.labels, exported=dict(exported),
            target=card.target.to_dict() if card.target is not None else {}, architecture=card.network.to_dict())

    # ---- the JSON document --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        document = {
            "format": self.format, "model": dict(self.model), "networks": [n.to_dict() for n in self.networks],
            "input_channels": [c.to_dict() for c in self.input_channels], "spacing": list(self.spacing),
            "orientation": self.orientation, "array_axes": self.array_axes, "patch_size": list(self.patch_size),
            "out_channels": self.out_channels, "sliding_window": self.sliding_window.to_dict(),
            "activation": self.activation, "decode": self.decode, "keep_largest": list(self.keep_largest),
            "labels": [label.to_dict() for label in self.labels], "target": dict(self.target),
            "architecture": dict(self.architecture), "exported": dict(self.exported)}
        return document

    @classmethod
    def from_dict(cls, document, where: str = PIPELINE) -> OnnxPipeline:
        """A pipeline from its JSON document: version first, then the schema (DeepMedError naming ``where``)."""
        from deepmed.utils.json_schema import schema_problems

        if not isinstance(document, dict):
            raise DeepMedError(f"{where}: expected a JSON object (an ONNX export's pipeline), "
                               f"got {type(document).__name__}")
        if document.get("format") != EXPORT_FORMAT:
            raise DeepMedError(f"{where}: at format: expected {EXPORT_FORMAT!r}, got {document.get('format')!r} "
                               "(exported by another deepmed version? export the model again)")
        problems = schema_problems(document, EXPORT_SCHEMA)
        if problems:
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise DeepMedError(f"{where}: ONNX export pipeline fails its schema {problems[0]}{more}")
        window = document["sliding_window"]
        return cls(
            model=dict(document["model"]), networks=tuple(NetworkFile.from_dict(n) for n in document["networks"]),
            input_channels=_channels(document["input_channels"]), spacing=tuple(document["spacing"]),
            orientation=document["orientation"], array_axes=document["array_axes"],
            patch_size=tuple(document["patch_size"]), out_channels=document["out_channels"],
            sliding_window=SlidingWindow(window["overlap"], window["sw_batch_size"], window["blend_mode"],
                                         window["tta_flips"]),
            activation=document["activation"], decode=document["decode"],
            keep_largest=tuple(document["keep_largest"]), labels=tuple(Label.from_dict(x) for x in document["labels"]),
            exported=dict(document["exported"]), target=dict(document.get("target") or {}),
            architecture=dict(document.get("architecture") or {}))

    @classmethod
    def read(cls, folder: str | Path) -> OnnxPipeline:
        """The pipeline of an export folder, checked; its ONNX files must be there."""
        path = Path(folder) / PIPELINE
        document = read_json_object(path, "the ONNX export's pipeline")
        pipeline = cls.from_dict(document, str(path))
        for network in pipeline.networks:
            if not (Path(folder) / network.file).is_file():
                raise DeepMedError(f"{path}: names {network.file}, which is not in {folder}")
        folds = [n.fold for n in pipeline.networks]
        if (None in folds and len(folds) > 1) or len(set(folds)) != len(folds):
            raise DeepMedError(f"{path}: at networks: expected one network, or one per distinct fold, "
                               f"got folds {folds}")
        return pipeline

    def write(self, folder: str | Path) -> Path:
        from deepmed.utils.atomic import write_text_atomic

        document = self.to_dict()
        OnnxPipeline.from_dict(document, str(Path(folder) / PIPELINE))  # never write what cannot be read back
        return write_text_atomic(Path(folder) / PIPELINE, json.dumps(document, indent=2) + "\n")

    # ---- the engine's view ---------------------------------------------------------------------------
    @property
    def folds(self) -> tuple[int, ...]:
        return tuple(n.fold for n in self.networks if n.fold is not None)

    def card(self, where: str = PIPELINE) -> ModelCard:
        """The model card these values came from (its pipeline part), for the engine's own inference code."""
        document = {
            "format": CARD_FORMAT, "application": self.model["application"],
            **{key: self.model[key] for key in ("id", "version", "title") if self.model.get(key) is not None},
            "output_kind": self.model["output_kind"], "orientation": self.orientation, "array_axes": self.array_axes,
            "inputs": [c.to_dict() for c in self.input_channels], "labels": [x.to_dict() for x in self.labels],
            "spacing": list(self.spacing), "patch_size": list(self.patch_size),
            "network": {"name": self.architecture.get("name", "onnx"),
                        "args": {**self.architecture.get("args", {}), "out_channels": self.out_channels}},
            "inference": {**self.sliding_window.to_dict(), "precision": "float32"},
            "postprocessing": {"keep_largest": list(self.keep_largest)}}
        if self.target:
            document["target"] = dict(self.target)
        if self.folds:
            document["folds"] = list(self.folds)
            document["fold_inputs"] = {str(n.fold): [c.to_dict() for c in n.input_channels] for n in self.networks}
        return ModelCard.from_dict(document, where)
