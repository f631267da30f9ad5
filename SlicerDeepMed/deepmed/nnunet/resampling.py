"""nnU-Net's ``default_resampling``: spline resizing (scikit-image's ``resize`` semantics, done with scipy) and
the separate-z rule for anisotropic data (in-plane spline per slice, then ``order_z`` along the coarse axis)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

ANISOTROPY_THRESHOLD = 3.0  # nnU-Net's ANISO_THRESHOLD: the coarsest axis > 3x the finest is "anisotropic"


def new_shape(shape, spacing, target_spacing) -> list[int]:
    """nnU-Net's ``compute_new_shape``: round(old spacing / new spacing x old size) per axis."""
    return [round(s / t * n) for s, t, n in zip(spacing, target_spacing, shape)]


def resize(image: np.ndarray, shape, order: int) -> np.ndarray:
    """scikit-image ``resize(image, shape, order, mode='edge', anti_aliasing=False)`` (clip=True): a float64
    spline zoom on the pixel grid, clipped to the input's value range."""
    image = np.asarray(image, dtype=np.float64)
    factors = [n_out / n_in for n_in, n_out in zip(image.shape, shape)]
    out = ndimage.zoom(image, factors, order=order, mode="nearest", grid_mode=True)
    np.clip(out, image.min(), image.max(), out=out)
    return out


def lowres_axis(spacing) -> list[int]:
    spacing = np.asarray(spacing, dtype=float)
    return [int(a) for a in np.where(spacing.max() / spacing == 1)[0]]


def separate_z(spacing, target_spacing, force: bool | None = None,
               threshold: float = ANISOTROPY_THRESHOLD) -> tuple[bool, int | None]:
    """Whether to resample the out-of-plane axis on its own, and which axis it is (nnU-Net's rule: the
    current spacing is anisotropic, else the target is; a tie of two coarse axes means no)."""
    if force is not None:
        axes = lowres_axis(spacing) if force else None
        chosen = bool(force)
    elif max(spacing) / min(spacing) > threshold:
        chosen, axes = True, lowres_axis(spacing)
    elif max(target_spacing) / min(target_spacing) > threshold:
        chosen, axes = True, lowres_axis(target_spacing)
    else:
        chosen, axes = False, None
    if axes is None or len(axes) != 1:
        return False, None
    return chosen, axes[0]


def resize_segmentation(labels: np.ndarray, shape, order: int) -> np.ndarray:
    """batchgenerators' ``resize_segmentation`` (nnunetv2 2.8.1's): each label's indicator resized with ``order``,
    the winner per voxel the first label with the highest score, except that where the nearest-neighbour
    label shares the top score (> 0) it wins (``seg_tiebreak='nearest'``)."""
    shape = tuple(int(n) for n in shape)
    if labels.size == 0:
        return np.zeros(shape, dtype=labels.dtype)
    nearest = resize(labels.astype(np.float64), shape, 0)
    if order == 0:
        return nearest.astype(labels.dtype)
    values = np.unique(labels)
    if len(values) == 1:
        return np.full(shape, values[0], dtype=labels.dtype)
    best = winner = nearest_score = None
    for index, value in enumerate(values):
        score = resize((labels == value).astype(np.float64), shape, order)
        if best is None:
            best, winner = score, np.zeros(shape, dtype=np.int32)
        else:
            better = score > best
            winner[better] = index
            np.maximum(best, score, out=best)
        at_nearest = nearest == value
        if nearest_score is None:
            nearest_score = np.zeros(shape)
        nearest_score[at_nearest] = score[at_nearest]
    result = values[winner]
    tie = (nearest_score == best) & (best > 0)
    result[tie] = nearest[tie]
    return result.astype(labels.dtype)


def _resize_z_labels(stage: np.ndarray, coordinates: np.ndarray, order_z: int, dtype) -> np.ndarray:
    """The out-of-plane step for labels: nearest for order 0, else each label's rounded indicator (ascending)."""
    if order_z == 0:
        return ndimage.map_coordinates(stage, coordinates, order=0, mode="nearest").astype(dtype)
    out = np.zeros(coordinates.shape[1:], dtype=dtype)
    for value in np.unique(stage):
        indicator = ndimage.map_coordinates((stage == value).astype(float), coordinates, order=order_z,
                                            mode="nearest")
        out[np.round(indicator) > 0.5] = value
    return out


def _lean_supported() -> bool:
    from deepmed.nnunet.slab_resampling import slabs_supported

    return slabs_supported()


def _lean_resize(channel: np.ndarray, shape, order: int) -> np.ndarray:
    from deepmed.nnunet.slab_resampling import lean_resize

    return lean_resize(channel, shape, order)


def resample(data: np.ndarray, shape, spacing, target_spacing, order: int = 3, order_z: int = 0,
             force_separate_z: bool | None = False, is_seg: bool = False) -> np.ndarray:
    """``data`` (C, ...) resized to ``shape`` as nnU-Net's ``resample_data_or_seg_to_shape``; the result keeps
    ``data``'s dtype (float16 logits stay float16, as in nnU-Net's export). ``is_seg``: label maps, each
    label's indicator resized (:func:`resize_segmentation`)."""
    resize_fn = resize_segmentation if is_seg else resize
    shape = np.asarray(shape, dtype=int)
    if np.all(np.asarray(data.shape[1:]) == shape):
        return data
    do_separate, axis = separate_z(spacing, target_spacing, force_separate_z)
    out = np.zeros((data.shape[0], *shape), dtype=data.dtype)
    lean = not do_separate and not is_seg and _lean_supported()
    for c in range(data.shape[0]):
        if lean:  # the same numbers without a float64 copy of the channel beside the spline coefficients
            out[c] = _lean_resize(data[c], shape, order)
            continue
        channel = data[c].astype(np.float64)
        if not do_separate:
            out[c] = resize_fn(channel, shape, order)
            continue
        in_plane = [n for i, n in enumerate(shape) if i != axis]
        stage = shape.copy()
        stage[axis] = channel.shape[axis]
        resized = np.zeros(stage)
        for index in range(channel.shape[axis]):
            source = np.take(channel, index, axis=axis)
            target = [slice(None)] * 3
            target[axis] = index
            resized[tuple(target)] = resize_fn(source, in_plane, order)
        if stage[axis] == shape[axis]:
            out[c] = resized
            continue
        scales = [n_in / n_out for n_in, n_out in zip(resized.shape, shape)]
        grid = np.mgrid[:shape[0], :shape[1], :shape[2]].astype(np.float64)
        coordinates = np.array([scale * (g + 0.5) - 0.5 for scale, g in zip(scales, grid)])
        if is_seg:
            out[c] = _resize_z_labels(resized, coordinates, order_z, out.dtype)
        else:
            out[c] = ndimage.map_coordinates(resized, coordinates, order=order_z, mode="nearest")
    return out
