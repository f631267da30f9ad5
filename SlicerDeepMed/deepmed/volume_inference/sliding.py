"""Sliding-window prediction of one volume with Gaussian blending, optional flip test-time augmentation and
fold ensembles, in slabs when the activation of many classes would not fit in memory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer

FLIP_AXES = ((2,), (3,), (4,))


def cpu_supports_bf16() -> bool:
    """True when this processor has native bf16 matrix instructions (AVX512-BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast where asked (or ``auto`` on CUDA / bf16-capable CPUs); float32 otherwise."""
    use_bf16 = precision == "bfloat16" or (precision == "auto" and (
        (device.type == "cuda" and torch.cuda.is_bf16_supported()) or (device.type == "cpu" and cpu_supports_bf16())))
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def predict_volume(model: torch.nn.Module, image: torch.Tensor, patch_zyx: Sequence[int], *,
                   activation: Callable[[torch.Tensor], torch.Tensor], overlap: float = 0.5, sw_batch_size: int = 2,
                   tta_flips: bool = False, precision: str = "float32", device: torch.device | None = None,
                   blend_mode: str = "gaussian") -> torch.Tensor:
    """Activation map (1, C, Z, Y, X), float32 on the CPU, of ``image`` (1, C_in, Z, Y, X)."""
    device = device or next(model.parameters()).device
    inferer = SlidingWindowInferer(roi_size=list(patch_zyx), sw_batch_size=sw_batch_size, overlap=overlap,
                                   mode=blend_mode, padding_mode="constant", sw_device=device, device="cpu")
    model.eval()
    with torch.inference_mode(), autocast_context(device, precision):
        output = activation(inferer(image, model).float())
        if tta_flips:
            for axes in FLIP_AXES:
                flipped = inferer(torch.flip(image, axes), model).float()
                output += torch.flip(activation(flipped), axes)
            output /= 1 + len(FLIP_AXES)
    return output.float().cpu()


#: Float32 working memory that one slab of the sliding window may take (output, blending weights, activation).
SLAB_BUDGET_BYTES = 512 * 2**20
#: A whole activation map is kept in float32 up to this size, in float16 beyond (many classes, big scans).
FLOAT32_ACTIVATION_BYTES = 256 * 2**20


def predict_ensemble(models: Sequence[torch.nn.Module], images: Sequence[torch.Tensor], patch_zyx: Sequence[int], *,
                     activation: Callable[[torch.Tensor], torch.Tensor], out_channels: int, overlap: float = 0.5,
                     sw_batch_size: int = 2, tta_flips: bool = False, precision: str = "float32",
                     device: torch.device | None = None, blend_mode: str = "gaussian",
                     slab_budget: int | None = None, float32_budget: int | None = None,
                     member_labels: list | None = None) -> np.ndarray:
    """Mean activation (C, Z, Y, X) of ``models`` (folds; each with the flip TTA if asked), each over its
    ``images`` entry (1, C_in, Z, Y, X: the same image, normalised as that model expects), as a numpy array:
    float32 when it takes at most ``float32_budget`` bytes, else float16.

    Memory stays bounded whatever the number of classes: the sliding window runs on slabs along z, each with a
    margin of half a patch on both sides (cropped off), sized so that its float32 maps fit ``slab_budget`` (but at
    least two patches deep, so that the margins' extra work stays under 50%). A
    volume that fits one slab is predicted exactly as by :func:`predict_volume`; slabs change the windows'
    positions near slab borders, which moves a few voxels' probabilities slightly (labels agree to > 99.9%).

    ``member_labels`` (a list, filled when given and there are several models): each model's own argmax
    channel map (uint8, Z, Y, X), for their disagreement.
    """
    slab_budget = SLAB_BUDGET_BYTES if slab_budget is None else slab_budget
    float32_budget = FLOAT32_ACTIVATION_BYTES if float32_budget is None else float32_budget
    _, _, depth, height, width = images[0].shape
    per_slice = out_channels * height * width * 4
    dtype = np.float32 if per_slice * depth <= float32_budget else np.float16
    margin = int(patch_zyx[0]) // 2
    core = max(2 * int(patch_zyx[0]), slab_budget // (3 * per_slice) - 2 * margin)  # margins cost < 50% extra
    out = np.empty((out_channels, depth, height, width), dtype=dtype)
    for z0 in range(0, depth, core):
        z1 = min(depth, z0 + core)
        a0, a1 = (0, depth) if core >= depth else (max(0, z0 - margin), min(depth, z1 + margin))
        part = None
        for index, (model, image) in enumerate(zip(models, images)):
            one = predict_volume(model, image[:, :, a0:a1], patch_zyx, activation=activation, overlap=overlap,
                                 sw_batch_size=sw_batch_size, tta_flips=tta_flips, precision=precision,
                                 device=device, blend_mode=blend_mode)[0]
            if member_labels is not None and len(models) > 1:
                if len(member_labels) <= index:
                    member_labels.append(np.empty((depth, height, width), dtype=np.uint8))
                member_labels[index][z0:z1] = one[:, z0 - a0:z1 - a0].argmax(dim=0).numpy().astype(np.uint8)
            part = one if part is None else part + one
        if len(models) > 1:
            part = part / len(models)
        out[:, z0:z1] = part[:, z0 - a0:z1 - a0].numpy()
    return out
