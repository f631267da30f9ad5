"""How closely an ONNX export reproduces its model on a real case: the outputs on the input grid (label maps:
the fraction of identical voxels) and the network outputs (logits) over the whole working grid, both paths
through the same preprocessing and sliding window, torch in float32."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from deepmed.inference.predictor import Predictor
from deepmed.transforms.preprocessing import to_working_grid
from deepmed.volume_inference.sliding import predict_ensemble

__all__ = ["Parity", "compare_export", "working_grid_logits"]


@dataclass(frozen=True)
class Parity:
    voxels: int  # of the output, on the input grid
    identical_fraction: float  # output voxels equal on both paths
    foreground_voxels: int  # label maps: voxels the torch path labels non-zero
    max_abs_logit_difference: float  # network outputs on the working grid, blended by the sliding window
    max_abs_output_difference: float  # the outputs themselves (label values, or target units)

    def summary(self) -> str:
        return (f"parity with torch: {100 * self.identical_fraction:.3f}% identical output voxels of {self.voxels} "
                f"({self.foreground_voxels} foreground), max |logit difference| {self.max_abs_logit_difference:.2g}, "
                f"max |output difference| {self.max_abs_output_difference:.2g}")


def working_grid_logits(predictor: Predictor, inputs) -> np.ndarray:
    """The mean network output (C, Z, Y, X) over the working grid: the Predictor's own preprocessing and sliding
    window, no activation, no flips, float32."""
    card, app = predictor.card, predictor.app
    images = app._channels(inputs, card, predictor.model_dir.name)
    image, _, _ = to_working_grid(images, None, list(card.spacing), orientation=card.orientation or "LPS")
    tensors = app._normalized_per_member(image, card, predictor.folds, len(predictor.members))
    patch = list(reversed(card.patch_size))
    if card.array_axes == "xyz":
        tensors, patch = [t.permute(0, 1, 4, 3, 2).contiguous() for t in tensors], list(card.patch_size)
    settings = card.inference
    return predict_ensemble([member["model"] for member in predictor.members], tensors, patch,
                            activation=lambda logits: logits.float(), out_channels=card.network.args["out_channels"],
                            overlap=settings.get("overlap", 0.5), sw_batch_size=settings.get("sw_batch_size", 2),
                            precision="float32", device=torch.device("cpu"),
                            blend_mode=settings.get("blend_mode", "gaussian"))


def compare_export(model_dir: str | Path, export_dir: str | Path, inputs) -> Parity:
    """Run the model (torch, CPU, float32) and its export (onnxruntime) on one case and compare."""
    reference, export = Predictor(model_dir, "cpu"), Predictor(export_dir)
    expected = sitk.GetArrayFromImage(reference.predict(inputs, precision="float32").output)
    got = sitk.GetArrayFromImage(export.predict(inputs).output)
    logits = np.abs(working_grid_logits(reference, inputs) - working_grid_logits(export, inputs)).max()
    foreground = int(np.count_nonzero(expected)) if reference.card.kind == "label_map" else 0
    output_difference = float(np.abs(expected.astype(np.float64) - got.astype(np.float64)).max())
    return Parity(int(expected.size), float(np.mean(expected == got)), foreground, float(logits), output_difference)
