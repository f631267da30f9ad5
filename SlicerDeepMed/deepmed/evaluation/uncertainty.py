"""How unsure a segmentation is: the voxel-wise normalised entropy, built one class at a time, and the
per-case score that ranks cases for review (``deepmed review``, batch ``results.csv``). Torch-free.

The voxel map: ``H(x) = -sum_c p_c log p_c / log C`` with ``p`` the class probabilities on the input grid
normalised to sum 1 (``C`` classes, background included): 0 where one class has all the mass, 1 where all
classes are equally likely.

The case score (:func:`case_uncertainty`, column ``uncertainty`` of ``results.csv``): the mean of that map
over the *boundary band* of the predicted label map, i.e. the voxels within ``BAND_VOXELS`` voxels (face
steps) of a place where two different labels meet. Far from any boundary a model is nearly always sure, so a
mean over the whole image would mostly measure how much background a scan has; the band measures how sure the
model is about where each structure ends. A prediction with no boundary at all (only background, or only one
label) has no band: its score is the mean over the whole image instead (low unless the model is unsure
everywhere), and ``band_voxels`` is 0.

For a cross-validation ensemble also the *fold disagreement* (:func:`fold_disagreement`, column
``fold_disagreement``): 1 - the mean over pairs of folds of their labels' Dice (on the working grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Half-width of the boundary band, in voxels (the boundary voxels themselves and one more step outward).
BAND_VOXELS = 2
#: Probabilities below this count as this much inside the logarithm (no log of 0).
TINY = 1e-8


class EntropyAccumulator:
    """The normalised entropy of class probabilities given one class map at a time (memory: two maps).

    With ``T = sum_c q_c`` and ``S = sum_c q_c log q_c`` of the un-normalised ``q`` (resampled probabilities do
    not sum exactly to 1), the entropy of ``p = q / T`` is ``log T - S / T``."""

    def __init__(self):
        self.total: np.ndarray | None = None
        self._plogp: np.ndarray | None = None
        self.classes = 0

    def add(self, probability: np.ndarray) -> None:
        q = np.clip(np.asarray(probability, dtype=np.float32), 0, 1)
        plogp = q * np.log(np.maximum(q, TINY))
        if self.total is None:
            self.total, self._plogp = q.copy(), plogp
        else:
            self.total += q
            self._plogp += plogp
        self.classes += 1

    def normalised(self) -> np.ndarray:
        """The entropy divided by log(C), in [0, 1] (float32)."""
        if self.total is None:
            raise ValueError("no class probabilities were added")
        total = np.maximum(self.total, TINY)
        entropy = np.log(total) - self._plogp / total
        entropy /= np.log(max(self.classes, 2))
        return np.clip(entropy, 0, 1).astype(np.float32)


@dataclass(frozen=True)
class CaseUncertainty:
    """The per-case score and the number of voxels it averages (0 band voxels: the whole image's mean)."""

    score: float
    band_voxels: int

    def as_values(self) -> dict:
        """The ``results.csv`` columns."""
        return {"uncertainty": round(self.score, 6), "uncertainty_band_voxels": self.band_voxels}


def boundary_band(labels: np.ndarray, width: int = BAND_VOXELS) -> np.ndarray:
    """Boolean mask of the voxels within ``width`` face steps of a boundary between two different labels
    (``width`` 1: the voxels on either side of each boundary)."""
    from scipy import ndimage

    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, dtype=bool)
    for axis in range(labels.ndim):
        differs = np.diff(labels, axis=axis) != 0
        before = [slice(None)] * labels.ndim
        after = [slice(None)] * labels.ndim
        before[axis], after[axis] = slice(0, -1), slice(1, None)
        edge[tuple(before)] |= differs
        edge[tuple(after)] |= differs
    if width > 1 and edge.any():
        edge = ndimage.binary_dilation(edge, iterations=width - 1)
    return edge


def case_uncertainty(labels: np.ndarray, entropy: np.ndarray, width: int = BAND_VOXELS) -> CaseUncertainty:
    """The mean normalised entropy over the boundary band of the predicted ``labels`` (same shape); the mean
    over every voxel when the prediction has no boundary."""
    labels, entropy = np.asarray(labels), np.asarray(entropy)
    if labels.shape != entropy.shape:
        raise ValueError(f"label map and entropy map differ in shape: {labels.shape} vs {entropy.shape}")
    band = boundary_band(labels, width)
    count = int(np.count_nonzero(band))
    values = entropy[band] if count else entropy
    return CaseUncertainty(float(values.mean(dtype=np.float64)) if values.size else 0.0, count)


def fold_disagreement(fold_labels) -> float:
    """1 - the mean pairwise agreement of the folds' label maps (same shape): a pair's agreement is the mean
    Dice over the foreground classes either predicts (1 when neither predicts any foreground); 0 when every
    fold predicts the same labels."""
    maps = [np.asarray(m) for m in fold_labels]
    if len(maps) < 2:
        raise ValueError(f"fold disagreement needs at least 2 label maps, got {len(maps)}")
    agreements = []
    for i in range(len(maps)):
        for j in range(i + 1, len(maps)):
            a, b = maps[i], maps[j]
            classes = (set(np.unique(a).tolist()) | set(np.unique(b).tolist())) - {0}
            dice = [2.0 * np.count_nonzero((a == c) & (b == c)) / (np.count_nonzero(a == c) + np.count_nonzero(b == c))
                    for c in classes]
            agreements.append(float(np.mean(dice)) if dice else 1.0)
    return 1.0 - float(np.mean(agreements))
