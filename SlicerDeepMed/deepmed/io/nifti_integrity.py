"""Detect truncated NIfTI files, which ITK's NIfTI reader would otherwise fill with zeros without a word."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

CHUNK = 1 << 20


def _expected_bytes(header: bytes) -> int | None:
    """Bytes a complete file holds (offset to the data + data), from a NIfTI-1 or NIfTI-2 header."""
    for endian in "<>":
        (size,) = struct.unpack(endian + "i", header[:4])
        if size == 348 and len(header) >= 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            (bitpix,) = struct.unpack(endian + "h", header[72:74])
            (offset,) = struct.unpack(endian + "f", header[108:112])
            break
        if size == 540 and len(header) >= 540:
            (bitpix,) = struct.unpack(endian + "h", header[14:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            (offset,) = struct.unpack(endian + "q", header[168:176])
            break
    else:
        return None
    if not 1 <= dims[0] <= 7:
        return None
    voxels = 1
    for d in dims[1:dims[0] + 1]:
        voxels *= max(int(d), 1)
    return int(offset) + voxels * bitpix // 8


def nifti_problem(path: Path) -> str | None:
    """A short description of why ``path`` (.nii / .nii.gz) is truncated or corrupt, or None when it is whole."""
    name = path.name.lower()
    if name.endswith(".nii"):
        with path.open("rb") as handle:
            expected = _expected_bytes(handle.read(540))
        actual = path.stat().st_size
    elif name.endswith(".nii.gz"):
        actual = 0
        expected = None
        try:
            with gzip.open(path, "rb") as handle:
                first = handle.read(540)
                expected = _expected_bytes(first)
                actual = len(first)
                while chunk := handle.read(CHUNK):
                    actual += len(chunk)
        except (EOFError, OSError, zlib.error) as exc:
            return f"file is truncated or corrupt: {exc}"
    else:
        return None
    if expected is None:
        return "not a NIfTI header"
    if actual < expected:
        return f"file is truncated: expected {expected} bytes of header and data, found {actual}"
    return None
