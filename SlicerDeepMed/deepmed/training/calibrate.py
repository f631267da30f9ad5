"""The end of a segmentation training: temperature scaling fitted on the validation cases' logits, with the
expected calibration error before and after on held-out cases (see :mod:`deepmed.evaluation.calibration`
for the ECE, the voxels used and the fit).

The best weights predict each validation case on the working grid (the plan's sliding window); at most
``SAMPLED_VOXELS`` voxels of the cases' foreground bands in all (split evenly over the cases, drawn with a fixed
seed) keep their logits, so memory stays bounded whatever the number of cases. The stored temperature is fitted
on every validation case; the ECE before/after is measured leave-one-case-out: each case's voxels with the
temperature fitted on the other cases (with a single validation case: on that case, said in the card).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from deepmed.evaluation.calibration import (
    BAND_VOXELS,
    ECE_BINS,
    band_mask,
    expected_calibration_error,
    fit_temperature,
    sample_voxels,
    top_label,
)
from deepmed.model.card_calibration import Calibration, CalibrationError
from deepmed.model.directory import WEIGHTS
from deepmed.model.weights import load_weights, split_networks

#: voxels (over all validation cases) whose logits the fit keeps: N x classes float32
SAMPLED_VOXELS = 200_000
MIN_VOXELS_PER_CASE = 5_000


@dataclass(frozen=True)
class CaseLogits:
    """The sampled band voxels of one case: logits (N, C) and reference class indices (N,)."""

    case: str
    logits: torch.Tensor
    labels: torch.Tensor


def sampled_logits(case: str, logits: torch.Tensor, reference: np.ndarray, limit: int, seed: int = 0,
                   band: int = BAND_VOXELS) -> CaseLogits:
    """At most ``limit`` band voxels of one case's logits (C, Z, Y, X) with their class indices (Z, Y, X)."""
    predicted = logits.argmax(dim=0).numpy()
    where = torch.from_numpy(sample_voxels(band_mask(reference, predicted, band), limit, seed))
    flat = logits.reshape(logits.shape[0], -1)
    labels = torch.from_numpy(np.ascontiguousarray(reference).reshape(-1).astype(np.int64))
    return CaseLogits(case, flat[:, where].T.contiguous().float(), labels[where])


def fit_calibration(cases: list[CaseLogits], band: int = BAND_VOXELS) -> Calibration | None:
    """Temperature fitted on all ``cases``; ECE before/after leave-one-case-out (one case: on itself). None when
    no case has a band voxel."""
    cases = [case for case in cases if case.labels.numel()]
    if not cases:
        return None
    logits, labels = torch.cat([c.logits for c in cases]), torch.cat([c.labels for c in cases])
    temperature = fit_temperature(logits, labels)
    before = top_label(logits, labels)
    if len(cases) == 1:
        after, evaluated_on = top_label(logits, labels, temperature), "fitted_cases"
    else:
        parts = []
        for index, case in enumerate(cases):
            others = [c for i, c in enumerate(cases) if i != index]
            held_out_t = fit_temperature(torch.cat([c.logits for c in others]), torch.cat([c.labels for c in others]))
            parts.append(top_label(case.logits, case.labels, held_out_t))
        after = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        evaluated_on = "leave_one_case_out"
    ece = CalibrationError(before=round(expected_calibration_error(*before, ECE_BINS), 6),
                           after=round(expected_calibration_error(*after, ECE_BINS), 6), bins=ECE_BINS,
                           evaluated_on=evaluated_on)
    return Calibration(temperature=round(temperature, 6), fitted_on=tuple(c.case for c in cases), band=band,
                       samples=int(labels.numel()), ece=ece)


def will_calibrate(application, data) -> bool:
    """Whether the end of this training fits a temperature: a softmax application with validation cases."""
    return bool(getattr(application, "calibrates", False) and data.val)


def calibrate_model(application, parts, data, plan, model_dir, device: torch.device) -> Calibration | None:
    """The calibration of a finished training's best weights (``model_dir/model.safetensors``) on its validation
    cases; None for applications without softmax outputs, runs without validation cases or weights."""
    if not will_calibrate(application, data) or not (model_dir / WEIGHTS).is_file():
        return None
    network = copy.deepcopy(parts.network("model"))
    network.load_state_dict(split_networks(load_weights(model_dir / WEIGHTS), list(application.inference_networks))
                            ["model"])
    network.eval()
    limit = max(MIN_VOXELS_PER_CASE, SAMPLED_VOXELS // len(data.val))
    cases = []
    for index, item in enumerate(data.val):
        logits, reference = application.validation_logits(network, item, plan, device)
        cases.append(sampled_logits(str(item.get("id", index)), logits, reference, limit, seed=index))
        del logits
    return fit_calibration(cases)
