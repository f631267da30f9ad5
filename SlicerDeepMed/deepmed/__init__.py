"""deepmed: deep learning for medical images on PyTorch, MONAI and SimpleITK.

The public Python API mirrors the command line::

    import deepmed
    image = deepmed.read_image("ct.nii.gz")
    dataset = deepmed.Dataset.load("dataset.json")
    rows = deepmed.evaluate("reference/", "predictions/")

Heavy modules (torch, MONAI) are imported only when a function that needs them is used.
"""

from __future__ import annotations

import importlib
import os

from deepmed.utils.openmp import choose_wait_policy

# How OpenMP's idle threads wait (read once, when PyTorch loads OpenMP, so chosen here before any torch import):
# spinning (OpenMP's default) on a quiet CPU, sleeping (OMP_WAIT_POLICY=PASSIVE) when other processes are busy
# on it; a value set by the user wins. See deepmed/utils/openmp.py.
choose_wait_policy(os.environ)

__version__ = "0.1.0"

_LAZY = {
    "DeepMedError": "deepmed.errors",
    "read_image": "deepmed.io.image_io",
    "read_channels": "deepmed.io.image_io",
    "write_image": "deepmed.io.image_io",
    "Dataset": "deepmed.data.manifest",
    "Case": "deepmed.data.manifest",
    "check_dataset": "deepmed.data.check",
    "scan_folder": "deepmed.data.scan",
    "evaluate": "deepmed.evaluation.evaluate",
    "train": "deepmed.training.api",
    "TrainRequest": "deepmed.training.request",
    "infer": "deepmed.inference.api",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepmed' has no attribute {name!r}")
