"""nnU-Net's resampling of logits back to the image grid, a slab of output slices at a time, bit for bit.

``resample`` (nnU-Net's ``resample_data_or_seg_to_shape``) makes every channel at full resolution in float64
and keeps all of them: for a 512 x 512 x 300 CT that is 630 MB per channel in flight plus 1.1 GB of float16
logits for 7 classes (15 GB for 105), before the argmax. Labels only need each voxel's channels, so here the
output is made slab by slab along the first axis: each slab is scipy's own zoom kernel
(``_nd_image.zoom_shift``, what ``ndimage.zoom`` calls) with the slab's first index as the shift, so every
value is computed with the very same arithmetic as the full zoom and the labels cannot differ. The
channels of a slab (and the lines of a spline filter) go to ``torch.get_num_threads()`` threads: scipy's kernels
release the GIL, and nnU-Net runs them on one. That private
entry point is checked against ``ndimage.zoom`` once per process; where it is missing or differs (another
scipy), :func:`slabs_supported` says no and the caller keeps the full-volume path.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from scipy import ndimage

SLAB_BYTES = 64 * 2**20  # the float16 logits of one slab (all channels), before its labels are taken


def _zoom_factors(shape_in, shape_out) -> np.ndarray:
    """``ndimage.zoom``'s factors with ``grid_mode=True``: input size / output size per axis."""
    return np.ascontiguousarray(np.divide(np.array(shape_in, dtype=np.float64), np.array(shape_out)))


def workers() -> int:
    """Threads for scipy's kernels (they release the GIL): torch's thread setting, what the run was given."""
    import torch

    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def _in_parallel(function, items: list) -> list:
    count = min(workers(), len(items))
    if count <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(function, items))


def _spline_filter_in_place(array: np.ndarray, order: int) -> np.ndarray:
    """``ndimage.spline_filter(array, order, mode='nearest')`` in place, each axis's lines split among threads
    (every line is filtered on its own, so the numbers are the same)."""
    for axis in range(array.ndim):
        across = max((a for a in range(array.ndim) if a != axis), key=lambda a: array.shape[a])
        bounds = np.linspace(0, array.shape[across], workers() + 1).astype(int)
        parts = [tuple(slice(a, b) if i == across else slice(None) for i in range(array.ndim))
                 for a, b in itertools.pairwise(bounds) if b > a]
        _in_parallel(lambda part, axis=axis: ndimage.spline_filter1d(array[part], order, axis, output=array[part],
                                                                     mode="nearest"), parts)
    return array


def _prefiltered(channel: np.ndarray, order: int) -> tuple[np.ndarray, int]:
    """What ``ndimage.zoom(mode='nearest')`` interpolates: the channel in float64, or for order > 1 its spline
    coefficients (padded by 12 edge voxels), filtered in place in one float64 buffer (zoom holds three)."""
    if order <= 1:
        return np.asarray(channel, dtype=np.float64), 0
    return _spline_filter_in_place(np.pad(channel, 12, mode="edge").astype(np.float64, copy=False), order), 12


def _row_ranges(rows: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, rows, workers() + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def lean_resize(channel: np.ndarray, shape, order: int) -> np.ndarray:
    """:func:`deepmed.nnunet.resampling.resize` (float64, clipped to the input's range) with the same numbers in
    less memory (no float64 copy of the input beside the padded spline coefficients) and on every thread."""
    shape = tuple(int(n) for n in shape)
    filtered, npad = _prefiltered(channel, order)
    zoom = _zoom_factors(channel.shape, shape)
    parts = _in_parallel(lambda rows: _zoom_slab(filtered, npad, zoom, shape, *rows, order), _row_ranges(shape[0]))
    out = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return np.clip(out, float(channel.min()), float(channel.max()), out=out)


def _zoom_slab(filtered: np.ndarray, npad: int, zoom: np.ndarray, shape_out, start: int, stop: int,
               order: int) -> np.ndarray:
    """Rows ``start:stop`` (first axis) of ``ndimage.zoom(..., order, mode='nearest', grid_mode=True)``."""
    from scipy.ndimage import _nd_image, _ni_support

    out = np.empty((stop - start, *shape_out[1:]), dtype=np.float64)
    shift = np.zeros(len(shape_out), dtype=np.float64)
    shift[0] = start
    _nd_image.zoom_shift(filtered, zoom, shift, out, order, _ni_support._extend_mode_to_code("nearest"), 0.0, npad,
                         True)
    return out


@lru_cache(maxsize=1)
def slabs_supported() -> bool:
    """Whether this scipy's zoom kernel gives slabs identical to ``ndimage.zoom`` (orders 1 and 3)."""
    rng = np.random.default_rng(0)
    image, shape = rng.normal(size=(5, 7, 6)), (13, 11, 9)
    try:
        for order in (1, 3):
            full = ndimage.zoom(image, np.divide(shape, image.shape), order=order, mode="nearest", grid_mode=True)
            filtered, npad = _prefiltered(image, order)
            zoom = _zoom_factors(image.shape, shape)
            parts = [_zoom_slab(filtered, npad, zoom, shape, a, b, order) for a, b in ((0, 4), (4, 13))]
            if full.shape != shape or not np.array_equal(np.concatenate(parts), full):
                return False
    except Exception:  # the private kernel moved or changed its signature
        return False
    return True


def resampled_slabs(data: np.ndarray, shape, order: int) -> Iterator[tuple[slice, np.ndarray]]:
    """``resample(data, shape, ..., order)`` (no separate z) as (rows, values) slabs along the first spatial
    axis, in ``data``'s dtype: the same numbers as the full resize, a few slices at a time."""
    shape = tuple(int(n) for n in shape)
    channels = data.shape[0]
    rows = max(1, SLAB_BYTES // max(1, channels * int(np.prod(shape[1:])) * data.dtype.itemsize))
    if tuple(data.shape[1:]) == shape:
        for start in range(0, shape[0], rows):
            yield slice(start, min(start + rows, shape[0])), data[:, start:start + rows]
        return
    zoom = _zoom_factors(data.shape[1:], shape)
    prepared = []
    for c in range(channels):
        channel = data[c].astype(np.float64)
        prepared.append((*_prefiltered(channel, order), channel.min(), channel.max()))
    for start in range(0, shape[0], rows):
        stop = min(start + rows, shape[0])
        slab = np.empty((channels, stop - start, *shape[1:]), dtype=data.dtype)

        def fill(c: int, start=start, stop=stop, slab=slab) -> None:
            filtered, npad, low, high = prepared[c]
            values = _zoom_slab(filtered, npad, zoom, shape, start, stop, order)
            np.clip(values, low, high, out=values)  # scikit-image's resize clips to the input's range
            slab[c] = values

        _in_parallel(fill, list(range(channels)))
        yield slice(start, stop), slab
