"""Reconstruction error of a learned representation against principal component analysis (PCA) with the same
number of components: the linear baseline a learned nonlinear code must beat.

PCA is fitted on the training cases' arrays (one row per case, numpy SVD) and each held-out case is
projected onto the first ``k`` components and back. Errors are measured on the arrays given (the model's
grid), in the images' intensity units: MSE, and PSNR against the training intensity range.
"""

from __future__ import annotations

import numpy as np


def fit_pca(train: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, basis) of ``train`` (cases x ...): the mean row and the first ``components`` principal axes."""
    rows = train.reshape(len(train), -1).astype(np.float64)
    if not 1 <= components <= min(rows.shape):
        raise ValueError(f"PCA: expected 1 to {min(rows.shape)} components for {len(rows)} cases, got {components}")
    mean = rows.mean(axis=0)
    _, _, axes = np.linalg.svd(rows - mean, full_matrices=False)
    return mean, axes[:components]


def pca_reconstruct(arrays: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Project ``arrays`` (cases x ...) onto the basis and back; same shape as ``arrays``."""
    rows = arrays.reshape(len(arrays), -1).astype(np.float64) - mean
    return ((rows @ basis.T) @ basis + mean).reshape(arrays.shape)


def reconstruction_error(reference: np.ndarray, reconstruction: np.ndarray, data_range: float) -> dict[str, float]:
    """MSE and PSNR (dB, against ``data_range``) of one case."""
    mse = float(np.mean((np.asarray(reconstruction, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return {"mse": mse, "psnr": float(10 * np.log10(data_range ** 2 / max(mse, 1e-20)))}


def compare_with_pca(train: np.ndarray, test: np.ndarray, reconstructions: np.ndarray, components: int,
                     data_range: float) -> dict:
    """Per-case and mean MSE/PSNR of ``reconstructions`` of ``test`` and of PCA's with ``components``.

    Returns ``{"model": {"mse", "psnr"}, "pca": {...}, "cases": [{"model_mse", "pca_mse", ...}], "better": bool}``
    (``better``: the model's mean MSE is below PCA's).
    """
    mean, basis = fit_pca(train, components)
    baseline = pca_reconstruct(test, mean, basis)
    cases = []
    for reference, model, pca in zip(test, reconstructions, baseline):
        ours, theirs = reconstruction_error(reference, model, data_range), reconstruction_error(reference, pca,
                                                                                                data_range)
        cases.append({"model_mse": ours["mse"], "model_psnr": ours["psnr"], "pca_mse": theirs["mse"],
                      "pca_psnr": theirs["psnr"]})
    summary = {name: {"mse": float(np.mean([c[f"{name}_mse"] for c in cases])),
                      "psnr": float(np.mean([c[f"{name}_psnr"] for c in cases]))} for name in ("model", "pca")}
    return {**summary, "cases": cases, "components": components,
            "better": summary["model"]["mse"] < summary["pca"]["mse"]}
