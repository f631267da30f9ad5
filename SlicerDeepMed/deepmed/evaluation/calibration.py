"""Calibration of class probabilities: the expected calibration error (ECE) and temperature scaling.

**ECE** (Guo et al. 2017, top-label): each voxel's confidence is its largest class probability and it is
correct when that class is the reference's; confidences fall into ``bins`` (15) equal-width bins of [0, 1]
(the last bin closed); ECE = sum over bins of (voxels in bin / all voxels) * |accuracy - mean confidence|.

**Which voxels** (the *band*): a segmentation's background far from any structure is predicted right with
confidence ~1 and would make every model look calibrated. The ECE and the temperature fit use the voxels of
the reference foreground or the predicted foreground (the argmax: a scalar temperature never changes it),
dilated by ``band`` voxels (3; a 3x3x3 cube per step, i.e. every voxel within Chebyshev distance ``band`` of
either foreground). Where neither has foreground, no voxel of that case counts.

**Temperature scaling**: probabilities = softmax(logits / T) with one T > 0 for all classes, fitted by
minimising the negative log-likelihood of the reference classes. The NLL is convex in 1/T, so a golden-section
search over log T in [log 0.05, log 20] finds its minimum; argmax (the label map) is unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

ECE_BINS = 15
BAND_VOXELS = 3
TEMPERATURE_RANGE = (0.05, 20.0)


def expected_calibration_error(confidence, correct, bins: int = ECE_BINS) -> float:
    """ECE of ``confidence`` values in [0, 1] with their ``correct`` flags (same length), ``bins`` equal-width
    bins; 0.0 for no values."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if confidence.shape != correct.shape:
        raise ValueError(f"confidence and correct differ in length: {confidence.size} vs {correct.size}")
    if confidence.size == 0:
        return 0.0
    index = np.minimum((np.clip(confidence, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
    count = np.bincount(index, minlength=bins)
    gap = np.bincount(index, weights=confidence - correct, minlength=bins)  # sum of (confidence - correct)
    return float(np.sum(np.abs(gap)) / count.sum())


def probability_ece(probabilities, labels, bins: int = ECE_BINS) -> float:
    """Top-label ECE of class ``probabilities`` (N, C) against reference class indices ``labels`` (N,)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).ravel()
    predicted = probabilities.argmax(axis=1)
    return expected_calibration_error(probabilities.max(axis=1), predicted == labels, bins)


def top_label(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Confidence (largest probability of softmax(``logits`` / ``temperature``), (N, C)) and whether its class
    is the reference's (``labels``, (N,)): what the ECE bins."""
    confidence, predicted = torch.softmax(logits.double() / temperature, dim=1).max(dim=1)
    return confidence.numpy(), (predicted == labels.long()).numpy()


def logit_ece(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, bins: int = ECE_BINS) -> float:
    """Top-label ECE of softmax(``logits`` / ``temperature``) (N, C) against class indices ``labels`` (N,)."""
    return expected_calibration_error(*top_label(logits, labels, temperature), bins)


def band_mask(reference: np.ndarray, predicted: np.ndarray, band: int = BAND_VOXELS) -> np.ndarray:
    """The voxels ECE and the temperature fit use: reference or predicted foreground (class index > 0),
    dilated by ``band`` voxels (Chebyshev distance; see the module docstring). Both arrays share one shape."""
    if reference.shape != predicted.shape:
        raise ValueError(f"reference and prediction differ in shape: {reference.shape} vs {predicted.shape}")
    foreground = torch.from_numpy(np.asarray((reference > 0) | (predicted > 0), dtype=np.float32))
    if band > 0 and foreground.ndim == 3:
        foreground = torch.nn.functional.max_pool3d(foreground[None, None], 2 * band + 1, stride=1,
                                                    padding=band)[0, 0]
    return foreground.numpy() > 0


def sample_voxels(mask: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """Flat indices of at most ``limit`` voxels of ``mask`` (all of them when fewer), drawn without
    replacement with a fixed seed, sorted."""
    where = np.flatnonzero(mask)
    if where.size > limit:
        where = np.sort(np.random.default_rng(seed).choice(where, size=limit, replace=False))
    return where


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, labels.long()))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, iterations: int = 60) -> float:
    """The T > 0 minimising the NLL of softmax(``logits`` / T) (N, C) for class indices ``labels`` (N,), by a
    golden-section search over log T in :data:`TEMPERATURE_RANGE`; 1.0 for no voxels."""
    if logits.shape[0] == 0:
        return 1.0
    logits, labels = logits.double(), labels.long()
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = (negative_log_likelihood(logits, labels, math.exp(x)) for x in (a, b))
    for _ in range(iterations):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = negative_log_likelihood(logits, labels, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = negative_log_likelihood(logits, labels, math.exp(b))
    return float(math.exp((low + high) / 2.0))
