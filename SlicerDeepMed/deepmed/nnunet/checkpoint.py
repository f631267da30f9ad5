"""nnU-Net checkpoints (``fold_N/checkpoint_final.pth``) read with ``torch.load(weights_only=True)``.

A trainer's checkpoint is a pickle: ``network_weights`` (tensors), ``optimizer_state``, ``init_args`` (plans,
dataset.json, configuration, fold, ``torch.device``), ``trainer_name``, ``inference_allowed_mirroring_axes``, logs.
Torch's safe unpickler accepts tensors and plain containers; nnU-Net's logs and EMA add numpy scalars and arrays,
which are the only other types allowed here. Anything else is refused, naming the type; no pickle code runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from deepmed.errors import DeepMedError

REQUIRED_KEYS = ("network_weights", "init_args", "trainer_name")


def _numpy_allow_list() -> list:
    """The numpy types nnU-Net's logs hold (float64 scalars, small arrays), under both numpy 1 and 2 names."""
    import numpy as np

    allowed = [np.ndarray, np.dtype]
    allowed += [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)]
    for module_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = __import__(module_name, fromlist=["scalar", "_reconstruct"])
        except ImportError:
            continue
        for name in ("scalar", "_reconstruct"):
            function = getattr(module, name, None)
            if function is not None:
                allowed.append((function, f"{module_name}.{name}"))
    return allowed


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's dictionary; one-line DeepMedError for a missing, damaged or unsafe file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DeepMedError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_numpy_allow_list()):
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # the safe unpickler refused a type, or the file is not a torch checkpoint
        message = str(exc)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
        if found:
            raise DeepMedError(f"{path}: refused: the checkpoint holds a pickled {found.group(1)}, which is not on "
                               "the allow-list of types nnU-Net checkpoints hold (nothing was executed)") from None
        first = next((line for line in message.splitlines() if line.strip()), type(exc).__name__)
        raise DeepMedError(f"{path}: not a readable torch checkpoint ({first[:160]})") from None
    if not isinstance(checkpoint, dict):
        raise DeepMedError(f"{path}: expected an nnU-Net checkpoint (a dict), got {type(checkpoint).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise DeepMedError(f"{path}: not an nnU-Net trainer checkpoint (missing {', '.join(missing)})")
    weights = checkpoint["network_weights"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise DeepMedError(f"{path}: network_weights is not a state dict of tensors")
    return checkpoint


def mirror_axes(checkpoint: dict) -> list[int]:
    """The axes nnU-Net's trainer allowed for mirroring at inference (none when the checkpoint does not say)."""
    axes = checkpoint.get("inference_allowed_mirroring_axes")
    return [int(a) for a in axes] if axes else []


def configuration_name(checkpoint: dict, path: Path) -> str:
    init_args = checkpoint.get("init_args")
    if not isinstance(init_args, dict) or not isinstance(init_args.get("configuration"), str):
        raise DeepMedError(f"{path}: init_args.configuration missing: which plans configuration trained it is unknown")
    return init_args["configuration"]
