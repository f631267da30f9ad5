"""Interactive segmentation: the image plus guidance (positive / negative clicks as Gaussian blobs in mm, the
previous mask, the refined label's one-hot planes) -> that label's mask. Trained on any label-map dataset with
simulated clicks, DeepEdit-style (some samples without clicks, others with click rounds placed by the current
network's errors, ``deepmed.interactive.simulate``). Planning, data, sampling, network and loss are the
segmentation application's; the network takes the guidance channels and has two outputs (not / the label).

Modes (the card's ``modes``): ``refine`` (image + clicks [+ previous mask] -> the label map with one label
refined in a region around the clicks) and ``predict`` (no clicks: every label automatically).
"""

from __future__ import annotations

import numpy as np
import torch

from deepmed.applications.base import APPLICATIONS, Prediction
from deepmed.applications.plan_sections import DensePlanSection
from deepmed.applications.segmentation import SegmentationApplication
from deepmed.applications.task_settings import InteractiveTask
from deepmed.losses.registry import VOXEL_LABEL_LOSSES, allow_for
from deepmed.model.transfer import output_dependent_keys
from deepmed.networks import build_network
from deepmed.planning.settings import DataSettings, TrainingSettings
from deepmed.transforms.augmentation import AugmentationSettings, training_transforms
from deepmed.transforms.click_simulation import next_click
from deepmed.transforms.guidance import (
    DEFAULT_REGION,
    GUIDANCE_CHANNELS,
    GuidanceSettings,
    guidance_channel_names,
    guidance_stack,
)


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    denominator = int(prediction.sum()) + int(truth.sum())
    return 1.0 if denominator == 0 else 2.0 * int((prediction & truth).sum()) / denominator


class ClickSimulation:
    """What a training step needs to simulate clicks: the plan's guidance settings and a seeded generator."""

    def __init__(self, plan, config):
        section = plan["interactive"]
        self.labels = list(section["labels"])
        self.sigma_mm = float(section["sigma_mm"])
        self.auto_fraction = float(section["auto_fraction"])
        self.max_rounds = int(section["max_rounds"])
        self.spacing_zyx = tuple(reversed(DensePlanSection.of(plan).spacing))
        self.rng = np.random.default_rng(TrainingSettings.from_config(config).seed)

    def inputs(self, image: np.ndarray, points: list, previous: list, chosen: list[int]) -> torch.Tensor:
        """(B, C + guidance, Z, Y, X): each sample's image and its guidance channels."""
        stacks = []
        for b in range(image.shape[0]):
            positive = [p for p, sign in points[b] if sign]
            negative = [p for p, sign in points[b] if not sign]
            planes = guidance_stack(image.shape[2:], positive, negative, previous[b], chosen[b], len(self.labels),
                                    self.spacing_zyx, self.sigma_mm)
            stacks.append(np.concatenate([image[b], planes]))
        return torch.from_numpy(np.stack(stacks))


@APPLICATIONS.register("interactive", "click-guided segmentation: refine a label with positive/negative clicks")
class InteractiveApplication(SegmentationApplication):
    name = "interactive"
    calibrates = False
    cpu_bf16_training = True  # as segmentation (same network): its click curves measured so (docs/interactive.md)
    demo = ""
    config_defaults = {"sigma_mm": 0.0, "auto_fraction": 0.3, "max_rounds": 1, "validation_clicks": 3,
                       "region_size": list(DEFAULT_REGION)}
    exported_decoding = "not exportable: clicks are computed by deepmed (deepmed.interactive)"

    def accepts_init(self, card):
        """An interactive model, or a segmentation model trained by deepmed: its first layers get the guidance
        channels (zero weights), its output head is fresh when the number of outputs differs."""
        return card.application in (self.name, "segmentation")

    # ---- planning -------------------------------------------------------------------------------------
    def plan(self, fingerprint, config, device, reasons):
        foreground = [name for name, value in sorted(fingerprint["labels"].items(), key=lambda kv: kv[1])
                      if value != 0]
        channels = list(fingerprint["channel_names"])
        extra = guidance_channel_names(foreground)
        planned = super().plan({**fingerprint, "channel_names": channels + extra}, config, device, reasons)
        planned["channel_names"] = channels
        planned["normalization"] = planned["normalization"][:len(channels)]
        task = InteractiveTask.from_config(config)
        task.check()
        sigma = float(task.sigma_mm) if float(task.sigma_mm) > 0 else 2.0 * float(np.mean(planned["spacing"]))
        reasons["interactive"] = (f"{len(extra)} guidance channels ({', '.join(GUIDANCE_CHANNELS)} of each label); "
                                  f"click blobs of sigma {sigma:g} mm")
        planned["interactive"] = {"labels": foreground, "classes": len(foreground) + 1, "sigma_mm": sigma,
                                  "auto_fraction": float(task.auto_fraction), "max_rounds": int(task.max_rounds),
                                  "validation_clicks": int(task.validation_clicks),
                                  "region_size": [int(v) for v in task.region_size]}
        return planned

    def extra_inputs(self, plan) -> int:
        return len(GUIDANCE_CHANNELS) * len(plan["interactive"]["labels"])

    def input_stems(self, plan):
        network = plan.network
        return {"model": output_dependent_keys(lambda args: build_network(network.name, args),
                                               network.plain_args(), argument="in_channels")}

    def training_transform(self, plan, config):
        data = DataSettings.from_config(config)
        return training_transforms(AugmentationSettings.from_config(config),
                                   list(reversed(DensePlanSection.of(plan).patch_size)), plan.sampling,
                                   plan["interactive"]["classes"], True, data.samples_per_case,
                                   data.foreground_ratio)

    def build_parts(self, plan, config, fitted):
        self.simulation = ClickSimulation(plan, config)
        return super().build_parts(plan, config, fitted)

    # ---- training -------------------------------------------------------------------------------------
    def train_step(self, parts, batch, step):
        """Per sample a random label present in the patch; a share (``auto_fraction``) without clicks; the others
        as the click protocol meets them: on half of the steps from the network's own automatic mask (the previous
        mask; the first click at its largest error, positive or negative), else from an empty mask (the first
        click at the centre of the label), then 0..max_rounds rounds where the network's prediction (no gradient)
        becomes the previous mask and its largest error gets the next click; then one optimisation step."""
        sim = self.simulation
        image = batch["image"].numpy() if hasattr(batch["image"], "numpy") else np.asarray(batch["image"])
        classes = np.asarray(batch["label"])[:, 0]
        count = image.shape[0]
        chosen, truths = [], []
        for b in range(count):
            present = [k for k in np.unique(classes[b]).tolist() if 1 <= k <= len(sim.labels)]
            chosen.append(int(sim.rng.choice(present)) if present else int(sim.rng.integers(1, len(sim.labels) + 1)))
            truths.append(classes[b] == chosen[-1])
        clicked = np.flatnonzero(sim.rng.random(count) >= sim.auto_fraction)
        points: list[list] = [[] for _ in range(count)]
        previous: list = [None] * count
        network = parts.networks["model"]
        from_automatic = clicked.size > 0 and sim.rng.random() < 0.5
        rounds = int(sim.rng.integers(0, sim.max_rounds + 1)) if clicked.size else 0
        for round_ in range(int(from_automatic) + 1 + rounds):
            if round_ > 0 or from_automatic:
                predicted = self._training_prediction(network, sim.inputs(image, points, previous, chosen), step)
                for b in clicked:
                    previous[b] = (predicted[b] == chosen[b]).astype(np.float32)
            for b in clicked:
                current = np.zeros_like(truths[b]) if previous[b] is None else previous[b] > 0.5
                click = next_click(current, truths[b], sim.spacing_zyx)
                if click is not None:
                    points[b].append((click.index_zyx, click.positive))
        inputs = sim.inputs(image, points, previous, chosen)
        return super().train_step(parts, {"image": inputs, "label": batch["label"]}, step)

    @staticmethod
    def _training_prediction(network, inputs: torch.Tensor, step) -> np.ndarray:
        """The network's label map (B, Z, Y, X, class indices), without gradient, for the click simulation."""
        network.eval()
        with torch.no_grad(), step.autocast():
            output = network(step.to_device(inputs))
        network.train()
        output = output[0] if isinstance(output, (list, tuple)) else output
        return output.argmax(dim=1).cpu().numpy()

    def validate_case(self, parts, item, plan, fitted, device):
        """Per label: Dice without clicks (``auto_dice_*``) and after ``validation_clicks`` simulated clicks
        (``dice_*``, the key metric's mean), on the working grid."""
        section, settings = DensePlanSection.of(plan), plan["interactive"]
        spacing_zyx = tuple(reversed(section.spacing))
        image, classes = np.asarray(item["image"]), np.asarray(item["label"])[0]
        network = parts.network()
        metrics: dict[str, float] = {}
        for index, name in enumerate(settings["labels"], start=1):
            truth = classes == index
            points: list = []
            predicted = self._whole(network, image, points, None, index, settings, spacing_zyx, section, device)
            metrics[f"auto_dice_{name}"] = _dice(predicted, truth)
            for _ in range(int(settings["validation_clicks"])):
                click = next_click(predicted, truth, spacing_zyx)
                if click is None:
                    break
                points.append((click.index_zyx, click.positive))
                predicted = self._whole(network, image, points, predicted.astype(np.float32), index, settings,
                                        spacing_zyx, section, device)
            metrics[f"dice_{name}"] = _dice(predicted, truth)
        names = settings["labels"]
        metrics["mean_auto_dice"] = float(np.mean([metrics[f"auto_dice_{n}"] for n in names]))
        metrics["mean_dice"] = float(np.mean([metrics[f"dice_{n}"] for n in names]))
        return metrics

    @staticmethod
    def _whole(network, image, points, previous, index, settings, spacing_zyx, section, device) -> np.ndarray:
        """The label's mask on the whole case, computed as a refinement computes its region."""
        from deepmed.applications.interactive_refine import label_probability

        planes = guidance_stack(image.shape[1:], [p for p, s in points if s], [p for p, s in points if not s],
                                previous, index, len(settings["labels"]), spacing_zyx, float(settings["sigma_mm"]))
        return label_probability([network], image, planes, index, section.patch_size, device) > 0.5

    # ---- the card and inference ---------------------------------------------------------------------------
    def card_fields(self, plan, fitted, dataset, config):
        fields = super().card_fields(plan, fitted, dataset, config)
        settings = plan["interactive"]
        guidance = GuidanceSettings(float(settings["sigma_mm"]), tuple(settings["labels"]),
                                           tuple(settings["region_size"]))
        fields["modes"] = [
            {"name": "refine", "output_kind": "label_map", "inputs": "clicks",
             "description": "refine one label with positive/negative clicks (and the previous mask)"},
            {"name": "predict", "output_kind": "label_map", "inputs": "images",
             "description": "every label automatically (no clicks)"}]
        fields["task"] = {"guidance": guidance.to_dict(), "validation_clicks": int(settings["validation_clicks"])}
        return fields

    def predict(self, members, inputs, card, device, options):
        from deepmed.applications import interactive_refine as refine

        prepared = refine.prepare_image(inputs, card, options.get("model_name", "model"))
        return self.predict_prepared(members, prepared, card, device, options)

    @staticmethod
    def predict_prepared(members, prepared, card, device, options) -> Prediction:
        """``options``: ``clicks`` (ClickSet), ``previous`` (label map on the input grid), ``label``."""
        from deepmed.applications import interactive_refine as refine
        from deepmed.io.clicks import ClickSet
        from deepmed.volume_inference.ongrid import image_like

        networks = [member["model"] for member in members]
        clicks = options.get("clicks") or ClickSet()
        previous = refine.check_previous(refine.read_previous(options.get("previous")), prepared.reference)
        if clicks.clicks or options.get("label"):
            label = refine.chosen_label(card, clicks, options.get("label"))
            labels, _, _ = refine.refine_labels(networks, prepared, card, clicks, previous, label, device)
        else:
            labels = refine.automatic_labels(networks, prepared, card, device)
        return Prediction(image_like(labels, prepared.reference))


allow_for(InteractiveApplication.name, VOXEL_LABEL_LOSSES)
