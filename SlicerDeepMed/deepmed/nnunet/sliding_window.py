"""nnU-Net's sliding-window prediction: tiles at step ``tile_step_size`` x patch, a Gaussian importance map
(sigma = patch / 8, peak scaled to 10), mirroring over the axes the trainer allowed, logits accumulated in
float16 as nnU-Net does, and the folds' logits averaged."""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch
from scipy.ndimage import gaussian_filter


@lru_cache(maxsize=2)
def gaussian_map(patch: tuple[int, ...], sigma_scale: float = 1.0 / 8, peak: float = 10.0) -> torch.Tensor:
    """The importance map (float16), with no zero entries (they would divide by zero at the borders)."""
    delta = np.zeros(patch)
    delta[tuple(p // 2 for p in patch)] = 1
    weights = gaussian_filter(delta, [p * sigma_scale for p in patch], 0, mode="constant", cval=0)
    weights /= np.max(weights) / peak
    weights = torch.from_numpy(weights).to(dtype=torch.float16)
    zero = weights == 0
    weights[zero] = torch.min(weights[~zero])
    return weights


def tile_starts(image_size, patch, step: float) -> list[list[int]]:
    """Start of every tile per axis: as few tiles as a step of at most ``step`` x patch needs, spread evenly."""
    starts = []
    for size, tile in zip(image_size, patch):
        count = int(np.ceil((size - tile) / (tile * step))) + 1
        stride = (size - tile) / (count - 1) if count > 1 else 0
        starts.append([int(np.round(stride * i)) for i in range(count)])
    return starts


def pad_to(data: torch.Tensor, patch) -> tuple[torch.Tensor, tuple]:
    """Zero-pad (C, ...) to at least ``patch`` on the last ``len(patch)`` axes (content centred, the odd voxel
    above; nnU-Net's ``pad_nd_image``); the crop that undoes it."""
    shape = data.shape[1:]
    missing = [0] * (len(shape) - len(patch)) + [max(0, p - s) for p, s in zip(patch, shape[-len(patch):])]
    if not any(missing):
        return data, tuple(slice(0, s) for s in shape)
    below = [m // 2 for m in missing]
    pads = []
    for b, m in reversed(list(zip(below, missing))):
        pads += [b, m - b]
    padded = torch.nn.functional.pad(data, pads, mode="constant", value=0)
    return padded, tuple(slice(b, b + s) for b, s in zip(below, shape))


def windows(shape, patch, step: float) -> list[tuple]:
    """The tiles' index tuples over the spatial ``shape``: 3D tiles, or for a 2D patch on a 3D volume every
    slice of the first axis with 2D tiles in it (nnU-Net's order: slice, then rows, then columns)."""
    if len(patch) == len(shape):
        return [tuple(slice(s, s + p) for s, p in zip(corner, patch))
                for corner in itertools.product(*tile_starts(shape, patch, step))]
    if len(patch) != len(shape) - 1:
        raise ValueError(f"patch {list(patch)} does not fit an image of {len(shape)} dimensions")
    in_plane = [tuple(slice(s, s + p) for s, p in zip(corner, patch))
                for corner in itertools.product(*tile_starts(shape[1:], patch, step))]
    return [(d, *window) for d in range(shape[0]) for window in in_plane]


def mirrored_prediction(network, x: torch.Tensor, axes: list[int]) -> torch.Tensor:
    """The network's logits averaged over every combination of flips of ``axes`` (the tile's spatial axes)."""
    prediction = network(x)
    dims = [a + 2 for a in axes]
    combinations = [c for n in range(len(dims)) for c in itertools.combinations(dims, n + 1)]
    for flip in combinations:
        prediction += torch.flip(network(torch.flip(x, flip)), flip)
    if combinations:
        prediction /= len(combinations) + 1
    return prediction


@torch.inference_mode()
def predict_logits(network, data: torch.Tensor, patch, out_channels: int, mirror_axes: list[int],
                   step: float = 0.5, device: torch.device | None = None) -> torch.Tensor:
    """Sliding-window logits (C, ...) float16 on the CPU, for one set of weights."""
    device = device or torch.device("cpu")
    network = network.to(device).eval()
    padded, unpad = pad_to(data, patch)
    shape = padded.shape[1:]
    logits = torch.zeros((out_channels, *shape), dtype=torch.half, device=device)
    counts = torch.zeros(shape, dtype=torch.half, device=device)
    weights = gaussian_map(tuple(patch)).to(device)
    autocast = torch.autocast(device.type, enabled=True) if device.type == "cuda" else _no_context()
    with autocast:
        for window in windows(shape, patch, step):
            tile = torch.clone(padded[(slice(None), *window)][None], memory_format=torch.contiguous_format).to(device)
            prediction = mirrored_prediction(network, tile, mirror_axes)[0].to(device)
            prediction *= weights
            logits[(slice(None), *window)] += prediction
            counts[window] += weights
    torch.div(logits, counts, out=logits)
    if torch.any(torch.isinf(logits)):
        raise RuntimeError("infinite logits in the sliding window (float16 overflow)")
    return logits[(slice(None), *unpad)].cpu()


def predict_folds(networks: list, data: torch.Tensor, patch, out_channels: int, mirror_axes: list[int],
                  step: float = 0.5, device: torch.device | None = None) -> torch.Tensor:
    """nnU-Net's ensemble of folds (one network per fold): the mean of their sliding-window logits (float16)."""
    total = None
    for network in networks:
        logits = predict_logits(network, data, patch, out_channels, mirror_axes, step, device)
        total = logits if total is None else total + logits
    if len(networks) > 1:
        total /= len(networks)
    return total


class _no_context:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
