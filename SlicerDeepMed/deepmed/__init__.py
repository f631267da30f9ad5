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

# OpenMP threads that wait passively (sleep) instead of spinning. On a CPU shared with other work (Slicer's
# GUI, other jobs), PyTorch's spinning intra-op threads collapse: on a 2-core machine running other jobs
# (load 2-3) a training step of the default U-Net took 3-6 s with 2 spinning threads, 0.41-0.46 s with 2
# passive ones (0.40 s with 1 thread); unloaded, a spinning step took 0.20 s. OpenMP reads this once, when
# PyTorch loads it, so it is set here, before any torch import; a value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
