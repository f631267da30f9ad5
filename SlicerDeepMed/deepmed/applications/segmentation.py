"""Segmentation: multi-class label maps; softmax probabilities resampled onto the input grid, then argmax."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from deepmed.applications.base import APPLICATIONS
from deepmed.applications.dense import DenseApplication
from deepmed.errors import DeepMedError
from deepmed.losses.registry import VOXEL_LABEL_LOSSES, allow_for
from deepmed.planning.dense import label_sampling
from deepmed.volume_inference.ongrid import image_like, running_argmax


def label_values(labels: dict[str, int]) -> list[int]:
    """Label values in channel order: channel i predicts the i-th smallest value (0 = background)."""
    return sorted(set(labels.values()) | {0})


@APPLICATIONS.register("segmentation", "multi-class segmentation: label map out, Dice-based losses")
class SegmentationApplication(DenseApplication):
    name = "segmentation"
    target_kind = "label_map"
    output_kind = "label_map"
    discrete_target = True
    default_loss = "dice_ce"
    default_sampling = "foreground"
    key_metric = "mean_dice"
    higher_is_better = True
    demo = "deepmed.applications.demos.segmentation:main_demo"  # make demo: MR-like organ + lesion, held-out Dice
    cpu_bf16_training = True  # 1.2-1.4x faster steps on CPUs with native bf16 (docs/benchmarks.md, CPU levers)
    calibrates = True  # the end of training fits a temperature on the validation cases (training/calibrate.py)
    exported_activation = "softmax"
    exported_decoding = "argmax over channels -> the label values, in channel order"

    def check_dataset(self, dataset):
        if not dataset.labels:
            raise DeepMedError(f"{dataset.source or dataset.name}: segmentation needs 'labels' in the manifest "
                               "(for image targets use --app regression)")
        super().check_dataset(dataset)

    def accepts_init(self, card):
        """Also any imported segmenter whose network the engine builds (a MONAI bundle's UNet, SegResNet,
        SwinUNETR, ...): its weights start the training, with this application's own preprocessing."""
        from deepmed.networks import NETWORKS

        segmenter = card.kind in ("label_map", "overlapping_masks")
        return super().accepts_init(card) or (segmenter and card.network is not None and card.network.name in NETWORKS)

    def choose_sampling(self, fingerprint):
        return label_sampling(fingerprint)

    def metric_names(self):
        return ("mean_dice", "dice_")

    def out_channels(self, labels):
        return len(label_values(labels))

    def target_statistics(self, targets):
        return {}

    def encode_target(self, target, stats, labels):
        """Map label values (possibly non-contiguous, e.g. 0, 1, 7, 9) to channel indices 0..C-1."""
        lut = {v: i for i, v in enumerate(label_values(labels))}
        out = np.zeros(target.shape, dtype=np.int16)
        for value, index in lut.items():
            out[target == value] = index
        return out

    def validation_logits(self, network, item, plan, device) -> tuple[torch.Tensor, np.ndarray]:
        """Logits (C, Z, Y, X) of a prepared validation case on the working grid and its class indices (Z, Y, X),
        for the temperature fit."""
        logits = self.predict_working_grid(network, item, plan, device, lambda output: output.float())
        return logits[0], np.asarray(item["label"])[0]

    def activation(self, logits):
        return torch.softmax(logits.float(), dim=1)

    def decode_on_input(self, channels, stats, labels):
        """Argmax of the resampled probabilities, one class at a time (a running maximum)."""
        values = np.asarray(label_values(labels))
        index, _ = running_argmax(channels())
        return values.astype(np.uint16 if values.max() > 255 else np.uint8)[index]

    def add_probabilities(self, result, channels, reference, vector=True, temperature=1.0):
        """Their normalised entropy in [0, 1] (deepmed.evaluation.uncertainty) and, with ``vector``, the
        probabilities (normalised to sum 1, a vector image); one class in memory at a time without it. With a
        temperature T (the card's calibration) p ** (1 / T), normalised: the softmax of the logits divided by T (for
        an ensemble or flips: of the averaged probabilities). Labels are made without it: never changed."""
        from deepmed.evaluation.uncertainty import EntropyAccumulator

        def scaled(values):
            clipped = np.clip(values, 0, 1)
            return clipped if temperature == 1.0 else np.power(clipped, 1.0 / temperature)

        accumulator, kept = EntropyAccumulator(), []
        for values in channels():
            q = scaled(values)
            accumulator.add(q)
            if vector:
                kept.append(q.astype(np.float32))
        result.uncertainty = image_like(accumulator.normalised(), reference)
        if vector:
            total = np.maximum(accumulator.total, 1e-8)
            stacked = np.stack([p / total for p in kept], axis=-1)
            image = sitk.GetImageFromArray(stacked, isVector=True)
            image.CopyInformation(reference)
            result.probabilities = image

    def validation_metrics(self, activation, target, stats, labels):
        """Dice per foreground class on the working grid (an empty class on both sides counts 1)."""
        prediction = activation.argmax(dim=1)
        target = target[:, 0].long()
        metrics = {}
        names = {v: k for k, v in labels.items()}
        for index, value in enumerate(label_values(labels)):
            if index == 0:
                continue
            p, t = prediction == index, target == index
            denominator = (p.sum() + t.sum()).item()
            dice = 1.0 if denominator == 0 else 2.0 * (p & t).sum().item() / denominator
            metrics[f"dice_{names.get(value, value)}"] = dice
        metrics["mean_dice"] = float(np.mean(list(metrics.values()))) if metrics else 0.0
        return metrics


allow_for(SegmentationApplication.name, VOXEL_LABEL_LOSSES)
