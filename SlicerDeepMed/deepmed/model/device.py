"""Which torch device to run on: ``auto`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch

from deepmed.errors import DeepMedError


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeepMedError("device cuda requested, but no CUDA GPU is available (use --device cpu or auto)")
    if name == "mps" and not mps_available():
        raise DeepMedError("device mps requested, but Apple MPS is not available")
    return torch.device(name)
