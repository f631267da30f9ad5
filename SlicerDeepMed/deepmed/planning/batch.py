"""Batch size and learning rate: each application's own defaults, fitted to the device's memory.

An application prefers a batch size and a learning rate for its kind of task (see each application's
``training_defaults``); these rules keep one step within what the device holds and scale the learning rate
with the batch actually used, so that the plan stays sensible when the inputs are large.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Input voxels one training step may hold (batch x voxels per item): 16 inputs of 48^3 on a CPU (what trains at
#: a useful speed there), 8 of 128^3 on a GPU (a few GB of activations for the small default networks).
STEP_VOXELS = {"cpu": 16 * 48 ** 3, "gpu": 8 * 128 ** 3}


@dataclass(frozen=True)
class TrainingDefaults:
    """An application's planned batch size and learning rate, with the reason of each."""

    batch_size: int
    lr: float
    batch_reason: str
    lr_reason: str


def step_voxels(device: str) -> int:
    return STEP_VOXELS["cpu" if device == "cpu" else "gpu"]


def fit_batch(preferred: int, item_voxels: int, device: str) -> tuple[int, str]:
    """``preferred`` items per step, fewer (at least 1) when they would exceed the device's step budget."""
    budget = step_voxels(device)
    fitting = max(1, budget // max(1, int(item_voxels)))
    if fitting >= preferred:
        return preferred, ""
    return fitting, (f"; {fitting} of {item_voxels} voxels each fit the {device} step budget of {budget} voxels "
                     f"(not {preferred})")


def scaled_lr(lr: float, preferred_batch: int, batch: int) -> tuple[float, str]:
    """Adam-style square-root scaling of ``lr`` when the batch differs from the one it was chosen for."""
    if batch == preferred_batch:
        return lr, ""
    scaled = float(f"{lr * math.sqrt(batch / preferred_batch):.3g}")
    return scaled, f"; scaled by sqrt({batch}/{preferred_batch}) for the smaller batch"


def whole_input_defaults(preferred_batch: int, lr: float, item_voxels: int, device: str, batch_why: str,
                         lr_why: str) -> TrainingDefaults:
    """Defaults of an application that trains on whole inputs (or fixed-size crops) of ``item_voxels``."""
    batch, batch_note = fit_batch(preferred_batch, item_voxels, device)
    lr, lr_note = scaled_lr(lr, preferred_batch, batch)
    return TrainingDefaults(batch, lr, f"{batch}: {batch_why}{batch_note}", f"{lr:g}: {lr_why}{lr_note}")
