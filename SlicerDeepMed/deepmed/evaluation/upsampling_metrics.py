"""PSNR and SSIM of an upsampled image against its high-resolution reference, beside B-spline interpolation's
(the baseline a learned upsampler must beat)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from deepmed.errors import DeepMedError
from deepmed.evaluation.regression_metrics import regression_metrics
from deepmed.io.geometry import grid_differences
from deepmed.transforms.resolution import bspline_upsample


def scores_with_baseline(reference: sitk.Image, prediction: sitk.Image, low: sitk.Image,
                         factor: Sequence[int]) -> dict[str, float]:
    """``psnr``, ``ssim`` of ``prediction`` and ``psnr_bspline``, ``ssim_bspline`` of ``low`` B-spline-upsampled
    by ``factor``, both against ``reference`` (all on the reference grid; PSNR's range is the reference's)."""
    baseline = bspline_upsample(low, factor)
    for name, image in (("prediction", prediction), ("B-spline upsampled input", baseline)):
        problems = grid_differences(image, reference)
        if problems:
            raise DeepMedError(f"{name} is not on the reference grid ({name} vs reference): {'; '.join(problems)}")
    ref = sitk.GetArrayFromImage(reference).astype(np.float64)
    data_range = float(ref.max() - ref.min()) or 1.0
    model = regression_metrics(ref, sitk.GetArrayFromImage(prediction), data_range=data_range)
    spline = regression_metrics(ref, sitk.GetArrayFromImage(baseline), data_range=data_range)
    return {"psnr": model["psnr"], "ssim": model["ssim"], "psnr_bspline": spline["psnr"],
            "ssim_bspline": spline["ssim"]}
