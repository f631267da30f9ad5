"""Image-to-image regression metrics: MAE, mean error (bias), RMSE, PSNR, SSIM, optionally inside a mask."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

REGRESSION_COLUMNS = ("case", "mae", "me", "rmse", "psnr", "ssim")
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def ssim_map(reference: np.ndarray, prediction: np.ndarray, data_range: float, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Voxel-wise SSIM (Wang et al. 2004) with a Gaussian window, in any dimension."""
    x = reference.astype(np.float64)
    y = prediction.astype(np.float64)
    blur = lambda a: gaussian_filter(a, sigma, mode="reflect", truncate=3.5)  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def regression_metrics(reference: np.ndarray, prediction: np.ndarray, mask: np.ndarray | None = None,
                       data_range: float | None = None, spacing: Sequence[float] | None = None) -> dict[str, float]:
    """Error metrics of ``prediction`` against ``reference`` (same shape), restricted to ``mask`` if given.

    PSNR uses ``data_range`` (default: the reference's max - min inside the mask); identical images give
    PSNR = +inf and SSIM = 1. ``spacing`` is accepted for symmetry with the segmentation metrics.
    """
    reference = np.asarray(reference, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    if reference.shape != prediction.shape:
        raise ValueError(f"reference and prediction shapes differ: {reference.shape} vs {prediction.shape}")
    inside = np.ones(reference.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if not inside.any():
        raise ValueError("the evaluation mask is empty")
    ref, pred = reference[inside], prediction[inside]
    error = pred - ref
    mse = float(np.mean(error**2))
    if data_range is None:
        data_range = float(ref.max() - ref.min()) or 1.0
    psnr = float("inf") if mse == 0 else float(20 * np.log10(data_range) - 10 * np.log10(mse))
    ssim = float(ssim_map(reference, prediction, data_range)[inside].mean())
    return {"mae": float(np.mean(np.abs(error))), "me": float(np.mean(error)), "rmse": float(np.sqrt(mse)),
            "psnr": psnr, "ssim": ssim}
