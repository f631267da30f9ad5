"""Weights on disk: safetensors only (no pickles), written atomically.

A model with one network keeps its plain parameter names; a model with several networks (a GAN's generator
and discriminator, say) prefixes each parameter with ``<network>.`` in the same file; a cross-validation
ensemble prefixes each fold's weights with ``fold_<k>.``. A tensor shared under several names (DynUNet's
``skip_layers.*`` are its ``input_block.*``, ``downsamples.*``, ...) is stored once; the other names are kept
in the file's metadata (``aliases``) and restored on loading, pointing at the same tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from deepmed.errors import DeepMedError
from deepmed.utils.atomic import atomic_path

MAIN = "model"  # the network name whose parameters are stored without a prefix
ALIASES = "aliases"  # metadata entry: {name: stored name} for tensors shared under several names


def shared_names(state_dict: dict) -> dict[str, str]:
    """``{alias: first name}`` for entries that are the very same tensor (same storage, offset, shape,
    strides and dtype) as an earlier entry."""
    first: dict[tuple, str] = {}
    aliases = {}
    for name, tensor in state_dict.items():
        if tensor.device.type == "meta" or tensor.numel() == 0:
            continue
        identity = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(),
                    tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        if identity in first:
            aliases[name] = first[identity]
        else:
            first[identity] = name
    return aliases


def save_weights(state_dict: dict, path: Path) -> Path:
    """Write a model's weights as safetensors, atomically; shared tensors once (see the module docstring)."""
    aliases = shared_names(state_dict)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items() if k not in aliases}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={ALIASES: json.dumps(aliases)} if aliases else None)
    return path


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict:
    """The tensors of a weights file by name, shared names restored (the same tensor object)."""
    if not Path(path).is_file():
        raise DeepMedError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as weights:
            names = weights.keys()
            tensors = {name: weights.get_tensor(name) for name in names}
            aliases = json.loads((weights.metadata() or {}).get(ALIASES, "{}"))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise DeepMedError(f"{path}: cannot read weights ({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(aliases, dict) or any(not isinstance(v, str) or v not in tensors for v in aliases.values()):
        raise DeepMedError(f"{path}: its '{ALIASES}' metadata names tensors the file does not hold")
    return {**tensors, **{alias: tensors[name] for alias, name in aliases.items()}}


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
