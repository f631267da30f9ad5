"""Planning rules for tasks on image patches (segmentation, voxel regression): spacing, patch, sampling.

Each rule returns its decision and the reason, so that the saved plan explains itself.
"""

from __future__ import annotations

import numpy as np

DIVISOR = 16  # patch sizes divisible by 2^4 (four down-samplings)
ANISOTROPY = 3.0  # nnU-Net: an axis is "low resolution" when its spacing is > 3x the finest
CPU_PATCH_VOXELS = 110592  # 48^3: what a CPU trains at a useful speed
GPU_PATCH_VOXELS = 128 ** 3
SMALL_CLASS_SHARE = 0.1  # a foreground class under 10% of the foreground gets class-balanced sampling


def target_spacing(fingerprint: dict) -> tuple[list[float], str]:
    """Median spacing; for strongly anisotropic data nnU-Net's rule: the coarse axis at its 10th percentile.

    The coarse axis is resampled finer (not to the median) when it is > 3x coarser than the finest axis and
    has fewer than a third of the voxels of the other axes, but never finer than the other axes' spacing.
    """
    median = [float(s) for s in fingerprint["spacing"]["median"]]
    size = fingerprint["size"]["median"]
    coarse = int(np.argmax(median))
    others = [i for i in range(3) if i != coarse]
    finest = min(median)
    if median[coarse] > ANISOTROPY * finest and size[coarse] * ANISOTROPY < min(size[i] for i in others):
        p10 = float(fingerprint["spacing"]["p10"][coarse])
        spacing = list(median)
        spacing[coarse] = max(p10, max(median[i] for i in others) + 1e-5)
        return spacing, (f"anisotropic (axis {'xyz'[coarse]} {median[coarse]:.3g} mm vs {finest:.3g} mm): "
                         f"median spacing, axis {'xyz'[coarse]} at its 10th percentile (nnU-Net's rule)")
    return median, "median spacing of the training cases"


def patch_size(fingerprint: dict, spacing: list[float], max_voxels: int) -> tuple[list[int], str]:
    """Median shape at the target spacing, shrunk (largest axis first) to the voxel budget, multiples of 16."""
    median_spacing = np.asarray(fingerprint["spacing"]["median"], dtype=np.float64)
    shape = np.asarray(fingerprint["size"]["median"], dtype=np.float64) * median_spacing / np.asarray(spacing)
    patch = [max(DIVISOR, round(s / DIVISOR) * DIVISOR) for s in shape]
    while int(np.prod(patch)) > max_voxels:
        axis = int(np.argmax(patch))
        if patch[axis] <= DIVISOR:
            break
        patch[axis] -= DIVISOR
    return patch, f"median image size at the target spacing, within {max_voxels} voxels"


def patch_budget(configured: int, device: str) -> int:
    if configured:
        return int(configured)
    return CPU_PATCH_VOXELS if device == "cpu" else GPU_PATCH_VOXELS


def label_sampling(fingerprint: dict) -> tuple[str, str]:
    """Class-balanced patches when a foreground class is small next to the others, else foreground-biased."""
    fractions = {k: v for k, v in fingerprint.get("label_fractions", {}).items()
                 if fingerprint["labels"].get(k, 0) != 0}
    foreground = sum(fractions.values())
    if foreground > 0 and len(fractions) > 1:
        smallest = min(fractions, key=fractions.get)
        share = fractions[smallest] / foreground
        if share < SMALL_CLASS_SHARE:
            return "class_balanced", f"class '{smallest}' is {share:.1%} of the foreground: class-balanced patches"
    return "foreground", "foreground-biased patches"
