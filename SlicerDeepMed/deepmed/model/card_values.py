"""Values a model card stores for objects JSON cannot hold, and their decoding: ``{"$dtype": "torch.float32"}``
-> ``torch.float32``, ``{"$device": "user"}`` -> None (the engine places tensors). Written by the MONAI bundle
importer (``zoo.bundle_expr``), read when an imported bundle's transforms and inferer are built."""

from __future__ import annotations

from deepmed.errors import DeepMedError

TORCH_DTYPES = ("float16", "float32", "float64", "half", "float", "double", "bfloat16", "int8", "int16", "int32",
                "int64", "uint8", "bool", "long", "int", "short", "complex64", "complex128")
NUMPY_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                "uint64", "bool_", "complex64", "complex128")


def decode(value):
    """Card values -> MONAI's: ``{"$dtype": "torch.float32"}`` -> ``torch.float32``, ``{"$device": ...}`` ->
    None (the engine places tensors); anything else unchanged (lists and dicts decoded inside)."""
    if isinstance(value, dict):
        if set(value) == {"$dtype"}:
            return _dtype(value["$dtype"])
        if set(value) == {"$device"}:
            return None
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def _dtype(name: str):
    import numpy
    import torch

    library, _, dtype = str(name).partition(".")
    known = TORCH_DTYPES if library == "torch" else NUMPY_DTYPES if library == "numpy" else ()
    if dtype not in known:
        raise DeepMedError(f"model card: unknown dtype {name!r} (expected torch.<dtype> or numpy.<dtype>)")
    return getattr(torch if library == "torch" else numpy, dtype)
