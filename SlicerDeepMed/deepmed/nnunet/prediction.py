"""One case through an imported nnU-Net model: a configuration (2D or 3D), a cascade (the previous stage's
labels as extra one-hot inputs) or an ensemble of configurations (their saved probabilities averaged, as
``nnUNetv2_ensemble``), then the determined post-processing.

The card's ``task`` is one configuration's settings (network ``model``; a cascade's ``previous_stage`` holds the
low-resolution stage's settings and ``network`` args, network ``previous_stage``), or ``{"ensemble": [settings,
...]}`` whose members' networks are ``member<i>`` (and ``member<i>_previous_stage``). ``postprocessing``: the
steps of nnU-Net's ``postprocessing.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepmed.model.card import ModelCard
from deepmed.nnunet.export import export_probabilities, export_segmentation, probabilities_to_segmentation
from deepmed.nnunet.postprocessing import apply_postprocessing
from deepmed.nnunet.preprocessing import preprocess
from deepmed.nnunet.sliding_window import predict_folds

MAIN, PREVIOUS = "model", "previous_stage"


@dataclass
class Stage:
    """One configuration of the model: its network's name in the weights, settings, network arguments and the
    previous stage of a cascade (None otherwise)."""

    network: str
    settings: dict
    args: dict
    previous: Stage | None = None


def stages(card: ModelCard) -> list[Stage]:
    """The configurations whose predictions make the model's (one, or the members of an ensemble)."""
    task = card.task

    def stage(name: str, settings: dict, args: dict) -> Stage:
        previous = settings.get("previous_stage")
        before = stage(f"{name}_{PREVIOUS}" if name != MAIN else PREVIOUS, previous, previous["network"]) \
            if previous else None
        return Stage(name, settings, args, before)

    if "ensemble" in task:
        return [stage(f"member{i}", settings, settings["network"]) for i, settings in enumerate(task["ensemble"])]
    return [stage(MAIN, task, card.network.args)]


def network_args(card: ModelCard) -> dict[str, dict]:
    """Every network the model needs, by name (the weights file's prefixes)."""
    found: dict[str, dict] = {}

    def walk(stage: Stage | None) -> None:
        if stage is not None:
            found[stage.network] = stage.args
            walk(stage.previous)

    for stage in stages(card):
        walk(stage)
    return found


@dataclass
class RunOptions:
    device: torch.device
    mirroring: bool
    step: float


def _logits(members: list[dict], stage: Stage, arrays: list[np.ndarray], spacing_zyx: list[float],
            options: RunOptions):
    """The stage's fold-averaged logits and the geometry to export them (a cascade runs its previous stage)."""
    previous = None
    if stage.previous is not None:
        logits, geometry = _logits(members, stage.previous, arrays, spacing_zyx, options)
        previous = export_segmentation(logits, geometry, stage.previous.settings)
    data, geometry = preprocess(arrays, spacing_zyx, stage.settings, previous)
    settings = stage.settings
    logits = predict_folds([m[stage.network] for m in members], torch.from_numpy(data), settings["patch_size"],
                           stage.args["num_classes"], settings["mirror_axes"] if options.mirroring else [],
                           options.step, options.device)
    return logits, geometry


def predict_labels(members: list[dict], card: ModelCard, arrays: list[np.ndarray], spacing_zyx: list[float],
                   options: RunOptions) -> np.ndarray:
    """The model's labels in the input's (Z, Y, X) order, post-processed as nnU-Net determined."""
    configurations = stages(card)
    if len(configurations) == 1:
        logits, geometry = _logits(members, configurations[0], arrays, spacing_zyx, options)
        labels = export_segmentation(logits, geometry, configurations[0].settings)
    else:
        total = None
        for stage in configurations:  # nnU-Net's average_probabilities: float32, summed in order, divided once
            logits, geometry = _logits(members, stage, arrays, spacing_zyx, options)
            probabilities = export_probabilities(logits, geometry, stage.settings).astype(np.float32, copy=False)
            total = probabilities if total is None else total + probabilities
        total /= len(configurations)
        labels = probabilities_to_segmentation(total, configurations[0].settings)
    steps = card.task.get("postprocessing") or []
    return apply_postprocessing(labels, steps) if steps else labels
