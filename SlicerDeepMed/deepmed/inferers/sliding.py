"""Sliding-window prediction of one volume with Gaussian blending and optional flip test-time augmentation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

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
