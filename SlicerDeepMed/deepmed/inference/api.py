"""Python API: ``deepmed.infer(model_dir, image_or_paths)`` -> SimpleITK image on the input's grid."""

from __future__ import annotations

from functools import lru_cache

import SimpleITK as sitk

from deepmed.inference.predictor import Predictor


@lru_cache(maxsize=2)
def _predictor(model_dir: str, device: str) -> Predictor:
    return Predictor(model_dir, device)


def infer(model, inputs, *, device: str = "auto", **options) -> sitk.Image:
    """Segment / predict one case. ``model``: a model directory or a Predictor; ``inputs``: path(s) or
    SimpleITK image(s), one per channel. Options: ``tta_flips``, ``overlap``, ``keep_largest``."""
    predictor = model if isinstance(model, Predictor) else _predictor(str(model), device)
    return predictor.predict(inputs, **options).output
