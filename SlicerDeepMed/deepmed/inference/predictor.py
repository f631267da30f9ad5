"""Load a model directory and segment / predict images; outputs lie on the exact grid of the input."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from deepmed.applications import get_application
from deepmed.errors import DeepMedError
from deepmed.inference.sliding import predict_volume
from deepmed.io.geometry import align_to_grid, grid_differences
from deepmed.io.image_io import read_channels
from deepmed.networks import build_network
from deepmed.training.checkpoint import load_weights
from deepmed.training.driver import pick_device
from deepmed.training.model_dir import WEIGHTS, read_card
from deepmed.transforms.preprocessing import normalize_image, resample_onto, to_working_grid


@dataclass
class Prediction:
    """The result on the input grid: ``output`` (label map or scalar volume), optional extras."""

    output: sitk.Image
    probabilities: sitk.Image | None = None  # vector image, one component per label (segmentation)
    uncertainty: sitk.Image | None = None    # normalised entropy in [0, 1] (segmentation)


def keep_largest_component(labels: np.ndarray) -> np.ndarray:
    """For each label value keep only its largest 26-connected component."""
    out = labels.copy()
    for value in np.unique(labels):
        if value == 0:
            continue
        components, n = ndimage.label(labels == value, structure=np.ones((3, 3, 3)))
        if n > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[(components > 0) & (components != 1 + int(np.argmax(sizes)))] = 0
    return out


class Predictor:
    """A trained model ready to run: ``Predictor(model_dir).predict([t1, flair])``."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto", expected_app: str | None = None):
        self.model_dir = Path(model_dir)
        self.card = read_card(self.model_dir)
        self.app = get_application(self.card["application"])
        if expected_app is not None and self.app.name != expected_app:
            raise DeepMedError(f"{self.model_dir}: is a {self.app.name} model, expected a {expected_app} model")
        self.device = pick_device(device)
        network = self.card["network"]
        self.model = build_network(network["name"], network["args"])
        try:
            self.model.load_state_dict(load_weights(self.model_dir / WEIGHTS))
        except RuntimeError as exc:
            raise DeepMedError(f"{self.model_dir / WEIGHTS}: weights do not fit the network in the card "
                               f"({str(exc).splitlines()[0]})") from None
        self.model.to(self.device).eval()
        self.labels = {entry["name"]: entry["value"] for entry in self.card["labels"]}
        self.target_stats = self.card.get("target", {}).get("statistics", {})

    @property
    def channel_names(self) -> list[str]:
        return [entry["name"] for entry in self.card["inputs"]]

    def _channels(self, inputs) -> list[sitk.Image]:
        if isinstance(inputs, (sitk.Image, str, os.PathLike)):
            inputs = [inputs]
        channels: list[sitk.Image] = []
        for item in inputs:
            channels.extend([item] if isinstance(item, sitk.Image) else read_channels(item))
        expected = self.channel_names
        if len(channels) != len(expected):
            raise DeepMedError(f"model {self.model_dir.name} expects {len(expected)} input channel(s) "
                               f"({', '.join(expected)}), got {len(channels)}")
        for index, channel in enumerate(channels):
            if channel.GetDimension() != 3:
                raise DeepMedError(f"input channel {index}: expected a 3D image, got {channel.GetDimension()}D")
            try:
                channels[index] = sitk.Cast(align_to_grid(channel, channels[0]), sitk.sitkFloat32)
            except ValueError:
                raise DeepMedError(f"input channel {index} is not on the grid of channel 0: "
                                   f"{'; '.join(grid_differences(channel, channels[0]))}") from None
        return channels

    def predict(self, inputs, *, tta_flips: bool | None = None, overlap: float | None = None,
                keep_largest: bool | None = None, probabilities: bool = False, precision: str | None = None) -> Prediction:
        """Run the model on one case (paths or SimpleITK images, one per channel)."""
        settings = self.card.get("inference", {})
        tta_flips = settings.get("tta_flips", False) if tta_flips is None else tta_flips
        overlap = settings.get("overlap", 0.5) if overlap is None else overlap
        keep_largest = settings.get("keep_largest", False) if keep_largest is None else keep_largest
        precision = precision or settings.get("precision", "auto")
        channels = self._channels(inputs)
        reference = channels[0]
        image, _, grid = to_working_grid(channels, None, self.card["spacing"],
                                         orientation=self.card.get("orientation", "LPS"))
        methods = [entry["normalization"] for entry in self.card["inputs"]]
        stats = [entry["statistics"] for entry in self.card["inputs"]]
        tensor = torch.from_numpy(normalize_image(image, methods, stats))[None]
        patch = list(reversed(self.card["patch_size"]))
        xyz = self.card.get("array_axes", "zyx") == "xyz"  # networks trained on (x, y, z) arrays (MONAI bundles)
        if xyz:
            tensor, patch = tensor.permute(0, 1, 4, 3, 2).contiguous(), list(self.card["patch_size"])
        activation = predict_volume(self.model, tensor, patch, activation=self.app.activation, overlap=overlap,
                                    sw_batch_size=settings.get("sw_batch_size", 2), tta_flips=tta_flips,
                                    precision=precision, device=self.device,
                                    blend_mode=settings.get("blend_mode", "gaussian"))
        if xyz:
            activation = activation.permute(0, 1, 4, 3, 2)
        activation = activation[0].numpy()
        on_input = np.stack([self._back_to_input(a, grid, reference) for a in activation])
        output_array = self.app.decode_output(on_input, self.target_stats, self.labels)
        if keep_largest and self.app.target_is_label:
            output_array = keep_largest_component(output_array)
        result = Prediction(self._image_like(output_array, reference))
        if probabilities and self.app.target_is_label:
            probs = np.clip(on_input, 0, 1)
            probs /= np.maximum(probs.sum(axis=0, keepdims=True), 1e-8)
            vector = sitk.GetImageFromArray(np.moveaxis(probs, 0, -1).astype(np.float32), isVector=True)
            vector.CopyInformation(reference)
            result.probabilities = vector
            entropy = -(probs * np.log(np.clip(probs, 1e-8, 1))).sum(axis=0) / np.log(max(probs.shape[0], 2))
            result.uncertainty = self._image_like(entropy.astype(np.float32), reference)
        return result

    @staticmethod
    def _back_to_input(array: np.ndarray, grid: sitk.Image, reference: sitk.Image) -> np.ndarray:
        image = sitk.GetImageFromArray(array.astype(np.float32))
        image.CopyInformation(grid)
        return sitk.GetArrayFromImage(resample_onto(image, reference))

    @staticmethod
    def _image_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(reference)
        return image
