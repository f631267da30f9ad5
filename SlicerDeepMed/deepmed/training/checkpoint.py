"""Checkpoints written atomically: weights as safetensors, the rest (optimiser, scheduler, RNG, history)
in a ``torch.save`` file that loads with ``weights_only=True``.

A checkpoint is a folder (``checkpoints/last/``): it is written under a temporary name and swapped in, so an
interruption at any moment leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from deepmed.errors import DeepMedError
from deepmed.model.weights import load_weights, save_weights

WEIGHTS = "weights.safetensors"
STATE = "state.pt"


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]), "python": list(map(int, random.getstate()[1]))}


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))


def save_checkpoint(folder: Path, model_state: dict, state: dict) -> Path:
    """Write ``folder/weights.safetensors`` + ``folder/state.pt`` as one atomic unit."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_weights(model_state, tmp / WEIGHTS)
        torch.save(state, tmp / STATE)
        old = folder.with_name(folder.name + ".old")
        if folder.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def find_checkpoint(folder: Path) -> Path | None:
    """The checkpoint folder, or its previous version when a swap was interrupted."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if (candidate / WEIGHTS).is_file() and (candidate / STATE).is_file():
            return candidate
    return None


def load_checkpoint(folder: Path, device: str | torch.device = "cpu") -> tuple[dict, dict]:
    found = find_checkpoint(folder)
    if found is None:
        raise DeepMedError(f"{folder}: no checkpoint to resume from")
    state = torch.load(found / STATE, map_location=device, weights_only=True)
    return load_weights(found / WEIGHTS, device), state
