"""Super-resolution (DLTK's 4x upsampling): a low-resolution image in, the same image on a grid refined by an
integer factor per axis out (same physical box and direction; ``deepmed.transforms.resolution``).

Training data (manifest): either pairs, ``image`` = the low-resolution scan and ``label`` = the high-resolution
one on the low-resolution grid refined by ``task.factor`` exactly; or high-resolution scans only (``image``, no
``label``), whose low-resolution side is simulated by the documented degradation (``resolution.degrade``:
Gaussian blur of one coarse voxel's FWHM, then sampling at the coarse voxel centres). Images keep their own
grids (no resampling to a working spacing, which would undo the task): ``task.factor`` is along each image's
index axes. Each case is z-scored with its low-resolution image's mean and standard deviation.

Training draws corresponding patches (``data.patch_size`` in low-resolution voxels, the high-resolution patch
``factor`` times larger at ``factor`` times the offset) with random flips; loss L1 (default) or MSE on the
fine grid. Validation and the card's metrics: PSNR (key) and SSIM on whole validation cases, beside B-spline
interpolation's. Inference runs a sliding window over the low-resolution input (MONAI; windows are refined as
they are blended) and writes a float volume on ``fine_grid(input, factor)``: output kind ``image``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference

from deepmed.applications.base import APPLICATIONS, Parts, Prediction, PreparedData, TrainableApplication
from deepmed.applications.plan_sections import SuperResolutionPlanSection
from deepmed.applications.task_settings import SuperResolutionTask
from deepmed.errors import DeepMedError
from deepmed.evaluation.regression_metrics import regression_metrics
from deepmed.io.geometry import grid_differences
from deepmed.io.image_io import read_channels, read_image, write_image
from deepmed.losses import allow_for, build_loss
from deepmed.networks import NETWORKS, build_network
from deepmed.optim import build_optimizer
from deepmed.planning.batch import whole_input_defaults
from deepmed.planning.settings import ComponentSettings, DataSettings, InferenceSettings
from deepmed.transforms.augmentation import AugmentationSettings
from deepmed.transforms.resolution import bspline_upsample, check_factor, crop_to_multiple, degrade, fine_grid

NAME = "superres"
LOSSES = ["l1", "mse", "huber"]
UPSAMPLER = "subpixel_sr"
MAX_AUTO_PATCH = 24        # an auto patch is at most this many low-resolution voxels per axis
INFERENCE_WINDOW = 2       # inference windows are this many training patches wide (fewer seams, same memory class)

allow_for(NAME, LOSSES)


def _zscore(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    mean, std = float(array.mean()), float(array.std()) or 1.0
    return ((array - mean) / std).astype(np.float32), mean, std


def upsample_array(networks: list[torch.nn.Module], low: np.ndarray, window_zyx: list[int], overlap: float,
                   device: torch.device, sw_batch_size: int = 2) -> np.ndarray:
    """The (Z, Y, X) low-resolution array refined by the networks (averaged), window by window."""
    tensor = torch.from_numpy(np.ascontiguousarray(low, dtype=np.float32))[None, None]
    window = [min(w, n) for w, n in zip(window_zyx, low.shape)]
    total = None
    with torch.no_grad():
        for net in networks:
            out = sliding_window_inference(tensor, window, sw_batch_size, net, overlap=overlap, mode="gaussian",
                                           sw_device=device, device="cpu")
            total = out if total is None else total + out
    return (total / len(networks))[0, 0].numpy()


class CorrespondingPatches:
    """A random low-resolution patch and the high-resolution patch over the same voxels, with random flips.

    Cases smaller than the patch are padded (edge values). The randomness comes from NumPy's global state,
    which the trainer seeds per epoch."""

    def __init__(self, patch_zyx: list[int], factor_zyx: list[int], flip: bool):
        self.patch, self.factor, self.flip = patch_zyx, factor_zyx, flip

    def __call__(self, item: dict) -> dict:
        low, high = item["image"], item["label"]
        pad = [max(0, p - n) for p, n in zip(self.patch, low.shape[1:])]
        if any(pad):
            low = np.pad(low, [(0, 0)] + [(0, p) for p in pad], mode="edge")
            high = np.pad(high, [(0, 0)] + [(0, p * f) for p, f in zip(pad, self.factor)], mode="edge")
        start = [np.random.randint(0, n - p + 1) for n, p in zip(low.shape[1:], self.patch)]
        low = low[(slice(None), *[slice(s, s + p) for s, p in zip(start, self.patch)])]
        high = high[(slice(None), *[slice(s * f, (s + p) * f) for s, p, f in zip(start, self.patch, self.factor)])]
        if self.flip:
            for axis in range(1, 4):
                if np.random.rand() < 0.5:
                    low, high = np.flip(low, axis), np.flip(high, axis)
        return {"image": torch.from_numpy(np.ascontiguousarray(low)),
                "label": torch.from_numpy(np.ascontiguousarray(high))}


@APPLICATIONS.register(NAME, "super-resolution: the input refined by an integer factor per axis (own, finer grid)")
class SuperResolutionApplication(TrainableApplication):
    name = NAME
    target_kind = "image"
    output_kind = "image"
    key_metric = "psnr"
    higher_is_better = True
    default_loss = "l1"
    config_defaults = {"factor": [4, 4, 1]}
    demo = "deepmed.applications.demos.super_resolution:run_demo"

    def metric_names(self):
        return ("psnr", "ssim")

    # ---- before training ---------------------------------------------------------------------------
    def check_dataset(self, dataset) -> None:
        for case in dataset.training:
            if len(case.images) != 1:
                raise DeepMedError(f"case {case.id}: super-resolution takes one image per case, got {len(case.images)}")

    def load_cases(self, cases):
        """(id, low, high): ``low`` None when only the high-resolution image is given (simulated later)."""
        loaded = []
        for case in cases:
            channels = read_channels(case.images)
            if len(channels) != 1 or channels[0].GetDimension() != 3:
                raise DeepMedError(f"case {case.id}: expected one 3D image, got {len(channels)} channel(s) of "
                                   f"{channels[0].GetDimension()}D")
            image = sitk.Cast(channels[0], sitk.sitkFloat32)
            if case.label is None:
                loaded.append((case.id, None, image))
            else:
                loaded.append((case.id, image, sitk.Cast(read_image(case.label), sitk.sitkFloat32), case.label))
        return loaded

    def fingerprint(self, loaded, dataset):
        highs = [entry[2] for entry in loaded]
        return {"name": dataset.name, "cases": len(loaded),
                "paired": sum(entry[1] is not None for entry in loaded),
                "channel_names": [dataset.channel_names.get("0", "image")],
                "spacing": np.median([h.GetSpacing() for h in highs], axis=0).tolist(),
                "size": np.median([h.GetSize() for h in highs], axis=0).astype(int).tolist()}

    def network_choices(self) -> list[str]:
        return [name for name in NETWORKS.names() if NETWORKS.metadata(name).get("upsamples")]

    def plan(self, fingerprint, config, device, reasons):
        factor = check_factor(SuperResolutionTask.from_config(config).factor, "task.factor")
        reasons["factor"] = "task.factor (along each image's index axes)"
        coarse = [max(1, int(n) // f) for n, f in zip(fingerprint["size"], factor)]
        data = DataSettings.from_config(config)
        if data.patch_planned:
            patch = [min(MAX_AUTO_PATCH, n) for n in coarse]
            reasons["patch_size"] = (f"low-resolution voxels: the median low-resolution size {coarse}, at most "
                                     f"{MAX_AUTO_PATCH} per axis")
        else:
            patch = [int(p) for p in data.patch_size]
            reasons["patch_size"] = "from the configuration (low-resolution voxels)"
        net = ComponentSettings.network(config)
        name = NETWORKS.canonical(net.name)
        args = dict(net.args)
        if not NETWORKS.metadata(name).get("upsamples"):
            reasons["network"] = (f"network '{name}' keeps the input grid; an upsampling network is needed: "
                                  f"{UPSAMPLER} (sub-pixel convolution, residual over trilinear)")
            name, args = UPSAMPLER, {}
        args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "features": 32, "blocks": 4, **args,
                "scale_factor": list(reversed(factor))}
        loss = ComponentSettings.loss(config).chosen(self.default_loss)
        return {"channel_names": fingerprint["channel_names"], "factor": factor, "patch_size": patch,
                "network": {"name": name, "args": args}, "loss": loss}

    def training_defaults(self, plan, fingerprint, device):
        """Small low-resolution patches (at most 24 voxels per axis): four per step; AdamW at 0.002."""
        section = SuperResolutionPlanSection.of(plan)
        high = int(np.prod([p * f for p, f in zip(section.patch_size, section.factor)]))
        return whole_input_defaults(4, 2e-3, high, device, "four patch pairs per step: the patches are small "
                                    "(at most 24 low-resolution voxels per axis)", "AdamW for a residual "
                                    "sub-pixel network at four patches per step")

    def prepare_data(self, loaded_train, loaded_val, dataset, plan, config) -> PreparedData:
        factor = SuperResolutionPlanSection.of(plan).factor
        return PreparedData([self._item(entry, factor, False) for entry in loaded_train],
                            [self._item(entry, factor, True) for entry in loaded_val], {"factor": factor})

    @staticmethod
    def pair(entry: tuple, factor: list[int]) -> tuple[sitk.Image, sitk.Image]:
        """(low, high) of a loaded case: the given pair (checked), or the high image cropped to a multiple of the
        factor and its simulated low-resolution image."""
        case_id, low, high = entry[:3]
        if low is None:
            high = crop_to_multiple(high, factor)
            return degrade(high, factor), high
        problems = grid_differences(high, fine_grid(low, factor))
        if problems:
            raise DeepMedError(f"case {case_id}: {Path(entry[3]).name}: the high-resolution image is not on the "
                               f"low-resolution grid refined by {factor} (high vs expected): {'; '.join(problems)}")
        return low, high

    def _item(self, entry: tuple, factor: list[int], validation: bool) -> dict:
        low, high = self.pair(entry, factor)
        low_array, mean, std = _zscore(sitk.GetArrayFromImage(low))
        high_array = ((sitk.GetArrayFromImage(high) - mean) / std).astype(np.float32)
        item = {"id": entry[0], "image": low_array[None], "label": high_array[None]}
        if validation:
            spline = (sitk.GetArrayFromImage(bspline_upsample(low, factor)) - mean) / std
            baseline = regression_metrics(high_array, spline)
            item["baseline"] = {"psnr_bspline": baseline["psnr"], "ssim_bspline": baseline["ssim"]}
        return item

    def training_transform(self, plan, config):
        section = SuperResolutionPlanSection.of(plan)
        return CorrespondingPatches(list(reversed(section.patch_size)), list(reversed(section.factor)),
                                    bool(AugmentationSettings.from_config(config).flip))

    # ---- parts and steps ---------------------------------------------------------------------------
    def build_parts(self, plan, config, fitted):
        model = build_network(plan.network.name, plan.network.plain_args())
        loss = build_loss(plan.loss, 1, ComponentSettings.loss(config).args)
        return Parts({"model": model}, {"model": build_optimizer(config, model.parameters())}, {"main": loss})

    def train_step(self, parts, batch, step):
        low, high = step.to_device(batch["image"], batch["label"])
        with step.autocast():
            output = parts.networks["model"](low)
        loss = parts.losses["main"](output.float(), high)
        step.optimize(loss, parts.optimizers["model"])
        return {"loss": float(loss.detach().item())}

    def validate_case(self, parts, item, plan, fitted, device):
        window = [INFERENCE_WINDOW * p for p in reversed(SuperResolutionPlanSection.of(plan).patch_size)]
        refined = upsample_array([parts.network()], item["image"][0], window, 0.25, device)
        metrics = regression_metrics(item["label"][0], refined)
        return {"psnr": metrics["psnr"], "ssim": metrics["ssim"], **item["baseline"]}

    # ---- the card and inference --------------------------------------------------------------------
    def card_fields(self, plan, fitted, dataset, config):
        section = SuperResolutionPlanSection.of(plan)
        factor, inference = section.factor, InferenceSettings.from_config(config)
        return {
            "inputs": [{"name": section.channel_names[0], "modality": section.channel_names[0],
                        "normalization": "zscore", "statistics": None,
                        "assumptions": "one low-resolution image; z-scored on its own mean and standard deviation"}],
            "labels": [],
            "patch_size": section.patch_size,
            "network": plan.network.to_json(),
            "inference": {"overlap": float(inference.overlap), "sw_batch_size": int(inference.sw_batch_size)},
            "settings": {"factor": factor, "window": [INFERENCE_WINDOW * p for p in section.patch_size],
                         "degradation": "gaussian_fwhm_one_coarse_voxel+linear_sampling (simulated pairs)"},
            "modes": [{"name": "upsample", "output_kind": "image", "inputs": "images",
                       "description": f"the input on its grid refined by {factor} (x, y, z): same physical extent "
                                      "and direction, spacing divided by the factor (a float volume)"}],
        }

    def inference_parts(self, card, model_dir):
        return {"model": build_network(card.network.name, card.network.args)}

    def predict(self, members, inputs, card, device, options):
        item = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        images = [item] if isinstance(item, sitk.Image) else read_channels(Path(os.fspath(item)))
        if len(images) != 1 or images[0].GetDimension() != 3:
            raise DeepMedError(f"{item if not isinstance(item, sitk.Image) else 'input'}: expected one 3D image, "
                               f"got {len(images)} channel(s) of {images[0].GetDimension()}D")
        image = sitk.Cast(images[0], sitk.sitkFloat32)
        settings, inference = card.settings, card.inference
        overlap = inference.get("overlap", 0.5) if options.get("overlap") is None else options["overlap"]
        low, mean, std = _zscore(sitk.GetArrayFromImage(image))
        refined = upsample_array([member["model"] for member in members], low, list(reversed(settings["window"])),
                                 overlap, device, int(inference.get("sw_batch_size", 2)))
        output = sitk.GetImageFromArray((refined * std + mean).astype(np.float32))
        output.CopyInformation(fine_grid(image, settings["factor"]))
        return Prediction(output=output)

    def write_prediction(self, prediction, path):
        return write_image(prediction.output, Path(path))
