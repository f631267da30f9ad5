"""Weights on disk: safetensors only (no pickles), written atomically.

A model with one network keeps its plain parameter names; a model with several networks (a GAN's generator
and discriminator, say) prefixes each parameter with ``<network>.`` in the same file; a cross-validation
ensemble prefixes each fold's weights with ``fold_<k>.``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from deepmed.errors import DeepMedError
from deepmed.utils.atomic import atomic_path

MAIN = "model"  # the network name whose parameters are stored without a prefix


def save_weights(state_dict: dict, path: Path) -> Path:
    """Write a model's weights as safetensors, atomically."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return path


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict:
    if not Path(path).is_file():
        raise DeepMedError(f"{path}: weights file not found")
    try:
        return load_file(str(path), device=str(device))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise DeepMedError(f"{path}: cannot read weights ({exc})") from None


def merge_networks(state_dicts: dict[str, dict]) -> dict:
    """``{"model": sd}`` -> sd; several networks -> one dict with ``<name>.`` prefixes."""
    if list(state_dicts) == [MAIN]:
        return dict(state_dicts[MAIN])
    return {f"{name}.{key}": value for name, sd in state_dicts.items() for key, value in sd.items()}


def split_networks(tensors: dict, names: list[str]) -> dict[str, dict]:
    """Inverse of :func:`merge_networks` for the networks ``names``."""
    if names == [MAIN]:
        return {MAIN: tensors}
    out: dict[str, dict] = {name: {} for name in names}
    for key, value in tensors.items():
        name, _, rest = key.partition(".")
        if name in out:
            out[name][rest] = value
    return out


def ensemble_weights(per_fold: dict[int, dict]) -> dict:
    """Several folds' inference weights in one file: ``fold_<k>.`` before each fold's parameter names."""
    return {f"fold_{fold}.{key}": value for fold, tensors in per_fold.items() for key, value in tensors.items()}


def fold_weights(tensors: dict, fold: int) -> dict:
    """One fold's weights out of :func:`ensemble_weights`."""
    prefix = f"fold_{fold}."
    return {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
