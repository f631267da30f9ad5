"""Count NaN/Inf voxels in a NIfTI file's stored data, which ITK's NIfTI reader silently turns into 0."""

from __future__ import annotations

import math
import os

import numpy as np

#: voxels read at a time (slabs along the slowest spatial axis), so a big volume is never copied whole.
SLAB_VOXELS = 1 << 24


def is_nifti(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith((".nii", ".nii.gz"))


def count_nonfinite_nifti(path: str | os.PathLike) -> int:
    """Non-finite voxels in the (scaled) data of a ``.nii``/``.nii.gz`` file, read slab by slab."""
    import nibabel as nib

    image = nib.load(os.fspath(path), keep_file_open=True)
    slope, inter = image.header.get_slope_inter()
    scaling_finite = all(v is None or math.isfinite(v) for v in (slope, inter))
    if image.header.get_data_dtype().kind not in "fc" and scaling_finite:
        return 0  # integers with finite scaling cannot hold NaN or Inf
    shape, proxy = image.shape, image.dataobj
    if len(shape) < 3:
        return int(np.size(proxy) - np.count_nonzero(np.isfinite(np.asanyarray(proxy))))
    per_plane = max(1, int(np.prod(shape)) // shape[2])
    step = max(1, SLAB_VOXELS // per_plane)
    bad = 0
    for start in range(0, shape[2], step):
        slab = np.asanyarray(proxy[:, :, start:start + step, ...])
        bad += int(slab.size - np.count_nonzero(np.isfinite(slab)))
    return bad
