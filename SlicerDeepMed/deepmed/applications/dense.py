"""Voxel-wise tasks on image patches (segmentation, image-to-image regression): the shared pipeline.

Cases are re-oriented and resampled onto a working grid, normalised, sampled as patches for training,
validated and predicted by a sliding window, and predictions resampled back onto the input's exact grid.
Subclasses say what the target is (``discrete_target``) and implement the small hooks at the bottom.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from deepmed.applications import dense_data
from deepmed.applications.base import Parts, Prediction, PreparedData, StepContext, TrainableApplication
from deepmed.applications.inputs import input_channels
from deepmed.applications.plan_sections import DensePlanSection
from deepmed.errors import DeepMedError
from deepmed.io.image_io import write_image
from deepmed.losses import build_loss
from deepmed.model.card import ModelCard
from deepmed.model.directory import label_colour
from deepmed.model.transfer import output_dependent_keys
from deepmed.networks import NETWORKS, build_network
from deepmed.optim import build_optimizer
from deepmed.planning import dense as rules
from deepmed.planning.batch import whole_input_defaults
from deepmed.planning.fingerprint import fingerprint_of_cases
from deepmed.planning.network import plan_dense_network
from deepmed.planning.settings import ComponentSettings, DataSettings, InferenceSettings, is_auto
from deepmed.transforms.augmentation import AugmentationSettings, training_transforms
from deepmed.transforms.preprocessing import normalize_image, to_working_grid
from deepmed.volume_inference.ongrid import channels_on_input, image_like, keep_largest_component
from deepmed.volume_inference.sliding import predict_ensemble, predict_volume

#: the registered networks that map an image to an image of the same extent (voxel-wise outputs)
DENSE_NETWORKS = ("unet", "basic_unet", "segresnet", "dynunet", "highresnet", "swin_unetr", "unetr")


class DenseApplication(TrainableApplication):
    """Image in, image of the same extent out. Attributes: ``discrete_target`` (label values, nearest-neighbour
    resampling) or scalar targets; ``default_sampling`` when the plan has no reason to choose otherwise."""

    discrete_target: bool
    default_sampling: str = "uniform"
    #: what ``activation`` and ``decode_on_input`` do, in words, for an ONNX export's pipeline.json
    exported_activation: str = "application"  # softmax | identity | application (this application's own)
    exported_decoding: str = "the application's decode_on_input"

    def check_dataset(self, dataset):
        missing = [case.id for case in dataset.training if case.label is None]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise DeepMedError(f"{dataset.source or dataset.name}: {self.name} needs a target image ('label') for "
                               f"every training case; missing for {', '.join(missing[:3])}{more}")

    # ---- planning --------------------------------------------------------------------------------------
    def network_choices(self) -> list[str]:
        return list(DENSE_NETWORKS)

    def plan(self, fingerprint, config, device, reasons):
        data = DataSettings.from_config(config)
        if data.spacing_planned:
            spacing, reasons["spacing"] = rules.target_spacing(fingerprint)
        else:
            spacing, reasons["spacing"] = [float(s) for s in data.spacing], "from the configuration"
        if data.patch_planned:
            budget = rules.patch_budget(data.max_patch_voxels, device)
            patch, reasons["patch_size"] = rules.patch_size(fingerprint, spacing, budget)
        else:
            patch, reasons["patch_size"] = [int(p) for p in data.patch_size], "from the configuration"
        channel_names = fingerprint["channel_names"]
        normalization = dense_data.normalization_methods(data.normalization, channel_names)
        reasons["normalization"] = "CT windowing for CT channels, foreground z-score otherwise" \
            if is_auto(data.normalization) else "from the configuration"
        if not is_auto(data.sampling):
            sampling, reasons["sampling"] = data.sampling, "from the configuration"
        else:
            sampling, reasons["sampling"] = self.choose_sampling(fingerprint)
        net = ComponentSettings.network(config)
        network = plan_dense_network(NETWORKS.canonical(net.name), len(channel_names),
                                     self.out_channels(fingerprint["labels"]), patch, spacing,
                                     {**self.network_defaults(net.name), **net.args},
                                     patch_from_config=not data.patch_planned)
        if network.patch_size != patch:
            reasons["patch_size"] += f"; {network.reasons[0]}"
        patch, args = network.patch_size, network.args
        reasons["network"] = "; ".join(network.reasons)
        loss = ComponentSettings.loss(config).chosen(self.default_loss)
        return {"channel_names": channel_names, "spacing": spacing, "patch_size": patch,
                "normalization": normalization, "sampling": sampling,
                "network": {"name": net.name, "args": args}, "loss": loss}

    def training_defaults(self, plan, fingerprint, device):
        """Two cases per step, each giving ``data.samples_per_case`` patches (2: four patches a step; nnU-Net takes
        two): the patch, not the batch, takes the memory (the patch is planned to the device's voxel budget);
        AdamW at 0.001, the usual rate for U-Nets trained from scratch."""
        return whole_input_defaults(2, 1e-3, int(np.prod(DensePlanSection.of(plan).patch_size)), device,
                                    "two cases per step, data.samples_per_case patches from each: the patch, "
                                    "planned to the device, takes the memory",
                                    "AdamW's usual rate for a U-Net from scratch at this batch")

    def choose_sampling(self, fingerprint: dict) -> tuple[str, str]:
        return self.default_sampling, f"{self.default_sampling} patches"

    # ---- data ------------------------------------------------------------------------------------------
    def load_cases(self, cases):
        return dense_data.read_cases(cases)

    def fingerprint(self, loaded, dataset):
        n_channels = len(loaded[0][1])
        names = [dataset.channel_names.get(str(i), f"channel_{i}") for i in range(n_channels)]
        if len(dataset.channel_names) not in (0, n_channels):
            names = [f"channel_{i}" for i in range(n_channels)]
        return fingerprint_of_cases(dataset.name, names, dataset.labels,
                                    [(channels, label) for _, channels, label in loaded])

    def prepare_data(self, loaded_train, loaded_val, dataset, plan, config) -> PreparedData:
        labels = dataset.labels
        section = DensePlanSection.of(plan)
        train = dense_data.to_working_grids(loaded_train, section.spacing, self.discrete_target)
        val = dense_data.to_working_grids(loaded_val, section.spacing, self.discrete_target)
        methods = section.normalization
        norm_stats = dense_data.fit_normalization(train, methods, self.discrete_target)
        target_stats = self.target_statistics([c["label"] for c in train])
        labels = dict(labels)
        encode = lambda target: self.encode_target(target, target_stats, labels)  # noqa: E731
        for cases in (train, val):
            dense_data.finalize_cases(cases, encode, methods, norm_stats, plan.sampling == "weighted",
                                      self.discrete_target)
        return PreparedData(train, val, {"norm_stats": norm_stats, "target_stats": target_stats, "labels": labels})

    def training_transform(self, plan, config):
        n_out = plan.network.args["out_channels"]
        data = DataSettings.from_config(config)
        return training_transforms(AugmentationSettings.from_config(config),
                                   list(reversed(DensePlanSection.of(plan).patch_size)), plan.sampling, n_out,
                                   self.discrete_target, data.samples_per_case, data.foreground_ratio)

    # ---- parts and steps -------------------------------------------------------------------------------
    def build_parts(self, plan, config, fitted):
        model = build_network(plan.network.name, plan.network.plain_args())
        loss = build_loss(plan.loss, plan.network.args["out_channels"], ComponentSettings.loss(config).args)
        return Parts({"model": model}, {"model": build_optimizer(config, model.parameters())}, {"main": loss})

    def output_heads(self, plan):
        network = plan.network
        return {"model": output_dependent_keys(lambda args: build_network(network.name, args), network.plain_args())}

    def train_step(self, parts: Parts, batch: dict, step: StepContext) -> dict[str, float]:
        image, target = step.to_device(batch["image"], batch["label"])
        with step.autocast():
            output = parts.networks["model"](image)
            if isinstance(output, (list, tuple)):  # deep supervision heads: train on the full-resolution one
                output = output[0]
            loss = parts.losses["main"](output.float(), target)
        step.optimize(loss, parts.optimizers["model"])
        return {"loss": float(loss.detach().item())}

    def validate_case(self, parts, item, plan, fitted, device):
        activation = self.predict_working_grid(parts.network(), item, plan, device, self.activation)
        target = torch.from_numpy(np.asarray(item["label"]))[None]
        return self.validation_metrics(activation, target, fitted["target_stats"], fitted["labels"])

    @staticmethod
    def predict_working_grid(network, item: dict, plan, device, activation) -> torch.Tensor:
        """``activation`` of ``network``'s output (1, C, Z, Y, X) over a prepared case's working-grid image, by
        the plan's sliding window in float32."""
        section = DensePlanSection.of(plan)
        inference = section.inference
        return predict_volume(network, torch.from_numpy(item["image"])[None], list(reversed(section.patch_size)),
                              activation=activation, overlap=inference.get("overlap", 0.5),
                              sw_batch_size=inference.get("sw_batch_size", 2), precision="float32", device=device)

    # ---- the card and inference ------------------------------------------------------------------------
    def card_fields(self, plan, fitted, dataset, config):
        section = DensePlanSection.of(plan)
        names = {v: k for k, v in fitted["labels"].items()}
        values = sorted(set(fitted["labels"].values()) | {0})
        labels = [{"value": v, "name": names.get(v, "background" if v == 0 else f"label_{v}"),
                   "color": label_colour(i)} for i, v in enumerate(values)] if self.discrete_target else []
        return {
            "inputs": [{"name": name, "modality": name, "normalization": method, "statistics": stats}
                       for name, method, stats in zip(section.channel_names, section.normalization,
                                                      fitted["norm_stats"])],
            "labels": labels,
            "target": {"statistics": fitted["target_stats"]} if fitted["target_stats"] else {},
            "spacing": section.spacing,
            "orientation": "LPS",
            "patch_size": section.patch_size,
            "network": plan.network.to_json(),
            "inference": InferenceSettings.from_config(config).to_json(),
        }

    def inference_parts(self, card, model_dir):
        return {"model": build_network(card.network.name, card.network.args)}

    def predict(self, members, inputs, card, device, options):
        settings = card.inference
        option = lambda key, default: settings.get(key, default) if options.get(key) is None else options[key]  # noqa: E731
        input_images = self._channels(inputs, card, options.get("model_name", "model"))
        reference = input_images[0]
        image, _, grid = to_working_grid(input_images, None, list(card.spacing),
                                         orientation=card.orientation or "LPS")
        del input_images
        images = self._normalized_per_member(image, card, options.get("folds"), len(members))
        patch = list(reversed(card.patch_size))
        xyz = card.array_axes == "xyz"  # networks trained on (x, y, z) arrays (MONAI bundles)
        if xyz:
            permuted = {id(t): t.permute(0, 1, 4, 3, 2).contiguous() for t in images}
            images, patch = [permuted[id(t)] for t in images], list(card.patch_size)
        wants_maps = options.get("probabilities") or options.get("uncertainty")
        member_labels = [] if wants_maps and len(members) > 1 and self.discrete_target else None
        activation = predict_ensemble([member["model"] for member in members], images, patch,
                                      activation=self.activation, out_channels=card.network.args["out_channels"],
                                      overlap=option("overlap", 0.5), sw_batch_size=settings.get("sw_batch_size", 2),
                                      tta_flips=option("tta_flips", False), precision=option("precision", "auto"),
                                      device=device, blend_mode=settings.get("blend_mode", "gaussian"),
                                      member_labels=member_labels)
        if xyz:
            activation = activation.transpose(0, 3, 2, 1)
        del images, image
        channels = lambda: channels_on_input(activation, grid, reference)  # noqa: E731  (one channel at a time)
        labels = {label.name: label.value for label in card.labels}
        target_stats = (card.target.statistics if card.target is not None else None) or {}
        output_array = self.decode_on_input(channels, target_stats, labels)
        keep = self.keep_largest_labels(card, options.get("keep_largest"))
        if keep is not None and self.discrete_target:
            output_array = keep_largest_component(output_array, keep)
        result = Prediction(image_like(output_array, reference))
        if wants_maps:
            calibration = card.calibration
            self.add_probabilities(result, channels, reference, vector=bool(options.get("probabilities")),
                                   temperature=1.0 if calibration is None else
                                   calibration.temperature_for(options.get("folds")))
        if member_labels:  # a fold ensemble: how much its folds disagree (deepmed.evaluation.uncertainty)
            from deepmed.evaluation.uncertainty import fold_disagreement

            result.values = {**(result.values or {}), "fold_disagreement": round(fold_disagreement(member_labels), 6)}
        return result

    @staticmethod
    def _normalized_per_member(image: np.ndarray, card: ModelCard, folds: list[int] | None, count: int) -> list:
        """The working-grid image normalised as each ensemble member expects (each fold fitted its own
        statistics); members that agree share one tensor."""
        per_fold = card.fold_inputs
        entries = [per_fold[str(f)] for f in folds] if per_fold and folds else [card.inputs] * count
        cache: dict[str, torch.Tensor] = {}
        tensors = []
        for inputs in entries:
            key = repr([(e.normalization, e.statistics) for e in inputs])
            if key not in cache:
                methods = [e.normalization for e in inputs]
                stats = [e.statistics for e in inputs]
                cache[key] = torch.from_numpy(normalize_image(image, methods, stats))[None]
            tensors.append(cache[key])
        return tensors

    @staticmethod
    def keep_largest_labels(card: ModelCard, requested: bool | None) -> list[int] | None:
        """Labels whose largest component alone is kept: all (``--keep-largest``), none (False), or by default
        those chosen by cross-validation (card ``postprocessing``), else the card's ``inference.keep_largest``."""
        every = [label.value for label in card.foreground_labels]
        if requested is not None:
            return every if requested else None
        chosen = card.postprocessing.get("keep_largest")
        if chosen is not None:
            return list(chosen) or None
        return every if card.inference.get("keep_largest", False) else None

    def add_probabilities(self, result: Prediction, channels, reference: sitk.Image, vector: bool = True,
                          temperature: float = 1.0) -> None:
        """Optional per-class outputs (segmentation: their entropy, and with ``vector`` the probabilities), with the
        card's temperature (calibration; 1.0: as trained)."""

    def write_prediction(self, prediction, path):
        return write_image(prediction.output, Path(path), label=self.discrete_target)

    _channels = staticmethod(input_channels)

    # ---- hooks of the voxel-wise tasks -----------------------------------------------------------------
    @abstractmethod
    def out_channels(self, labels: dict[str, int]) -> int:
        """Number of network output channels."""

    @abstractmethod
    def target_statistics(self, targets: list[np.ndarray]) -> dict:
        """Statistics of the training targets saved in the card (e.g. regression scaling)."""

    @abstractmethod
    def encode_target(self, target: np.ndarray, stats: dict, labels: dict[str, int]) -> np.ndarray:
        """Raw target array -> what the loss sees (class indices, or a scaled scalar map)."""

    @abstractmethod
    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Network output -> the quantity resampled onto the input grid (probabilities, scaled values)."""

    @abstractmethod
    def decode_on_input(self, channels, stats: dict, labels: dict[str, int]) -> np.ndarray:
        """``channels()`` yields each activation channel on the input grid, one at a time -> the final array
        (label values, or target units), without holding all channels at once."""

    @abstractmethod
    def validation_metrics(self, activation: torch.Tensor, target: torch.Tensor, stats: dict,
                           labels: dict[str, int]) -> dict[str, float]:
        """Metrics of one validation case on the working grid; must include ``key_metric``."""

    def network_defaults(self, network: str) -> dict:
        """Constructor arguments this application prefers for ``network`` (the user's args still win)."""
        return {}
