"""Case-level applications: one result per case from the whole image (DLTK's sex classification and age
regression from T1 MR).

* ``classification``: a class per case, out come the class and each class's probability;
* ``case_regression``: a number per case (an age, a volume), out comes the value (the voxel-wise
  ``regression`` maps an image to an image).

Targets are the manifest's ``value`` per training case (``{"image": "s01_t1.nii.gz", "value": "female"}``, or a
``value`` column of a CSV manifest). Classes are declared by ``task.classes`` or the manifest's ``labels``
(``{"female": 0, "male": 1}``); a case names its class or gives its number. The whole image goes to the
network on a grid planned from the median physical extent (``case_level_data``); the network is one of the
registered networks with a vector output (``deepmed list networks``: densenet, densenet121, resnet10,
resnet18, efficientnet_b0). Results are a table row (``Prediction.values``), written as a one-row CSV.
"""

from __future__ import annotations

import csv
import io
from abc import abstractmethod
from pathlib import Path

import numpy as np
import torch
from monai import transforms as mt

from deepmed.applications import dense_data
from deepmed.applications.base import APPLICATIONS, Parts, Prediction, PreparedData, TrainableApplication
from deepmed.applications.case_level_data import case_input, physical_extent, plan_input_grid, to_input_grid
from deepmed.applications.inputs import input_channels
from deepmed.applications.plan_sections import CaseLevelPlanSection, ClassesPlanSection
from deepmed.applications.task_settings import ClassificationTask
from deepmed.data.case_io import read_case
from deepmed.errors import DeepMedError
from deepmed.evaluation.case_level_metrics import classification_metrics
from deepmed.losses import build_loss
from deepmed.losses.registry import CASE_LABEL_LOSSES, allow_for
from deepmed.model.card import ModelCard
from deepmed.model.directory import label_colour
from deepmed.networks import NETWORKS, build_network, network_arguments, outputs_vector
from deepmed.optim import build_optimizer
from deepmed.planning.batch import whole_input_defaults
from deepmed.planning.dense import patch_budget
from deepmed.planning.fingerprint import fingerprint_of_cases
from deepmed.planning.settings import ComponentSettings, DataSettings, is_auto
from deepmed.transforms.augmentation import AugmentationSettings, augmentation_transforms
from deepmed.transforms.preprocessing import normalize_image
from deepmed.utils.atomic import write_text_atomic
from deepmed.utils.choices import suggest

#: The configuration's default network makes images; these applications then take their own default.
CONFIG_DEFAULT_NETWORK = "unet"
DEFAULT_NETWORK = {"cpu": "densenet", "gpu": "densenet121"}
CASES_PER_STEP = 8  # whole images per training step (at least; classification: 4 per class)
CASES_PER_CLASS = 4


def _one_line(problems: list[str]) -> str:
    """The first problem, and how many more cases have one."""
    more = f" (and {len(problems) - 1} more case(s))" if len(problems) > 1 else ""
    return problems[0] + more


def _unknown_class(value, classes: list[str]) -> str:
    hint = suggest(str(value), classes).strip()
    return f"class {value!r} is not a declared class ({', '.join(classes)})" + (f"; {hint}" if hint else "")


class CaseLevelApplication(TrainableApplication):
    """Whole image in, one row of values out. Subclasses say what the target is (hooks at the bottom)."""

    target_kind = "values"
    output_kind = "table"
    output_suffix = ".csv"

    # ---- before training -------------------------------------------------------------------------------
    def check_dataset(self, dataset):
        where = dataset.source or dataset.name
        missing = [f"{where}: case {c.id}: no 'value' ({self.value_hint})" for c in dataset.training
                   if c.value is None]
        problems = missing + [f"{where}: case {c.id}: {problem}" for c in dataset.all_cases if c.value is not None
                              for problem in [self.value_problem(c.value, dataset.labels)] if problem]
        if problems:
            raise DeepMedError(_one_line(problems))

    def load_cases(self, cases):
        return [(case.id, read_case(case, with_label=False)[0], case.value) for case in cases]

    def fingerprint(self, loaded, dataset):
        n_channels = len(loaded[0][1])
        names = [dataset.channel_names.get(str(i), f"channel_{i}") for i in range(n_channels)]
        if len(dataset.channel_names) not in (0, n_channels):
            names = [f"channel_{i}" for i in range(n_channels)]
        result = fingerprint_of_cases(dataset.name, names, {}, [(channels, None) for _, channels, _ in loaded])
        extents = np.asarray([physical_extent(channels[0]) for _, channels, _ in loaded])
        result["extent_mm"] = {"median": np.median(extents, axis=0).tolist()}
        result["declared_labels"] = dict(dataset.labels)
        return result

    def plan(self, fingerprint, config, device, reasons):
        data = DataSettings.from_config(config)
        extent = fingerprint["extent_mm"]["median"]
        spacing, size, reason = plan_input_grid([extent], patch_budget(data.max_patch_voxels, device))
        if not data.spacing_planned and not data.patch_planned:
            spacing, size, reason = [float(s) for s in data.spacing], [int(n) for n in data.patch_size], \
                "from the configuration"
        elif not data.patch_planned:
            size = [int(n) for n in data.patch_size]
            spacing = [max(e / n for e, n in zip(extent, size))] * 3
            reason = f"input size from the configuration, spacing to cover the median extent ({spacing[0]:.2f} mm)"
        elif not data.spacing_planned:
            spacing = [float(s) for s in data.spacing]
            size = [max(16, int(np.ceil(e / s / 8)) * 8) for e, s in zip(extent, spacing)]
            reason = "spacing from the configuration, size to cover the median extent"
        reasons["input_size"] = reason
        channel_names = fingerprint["channel_names"]
        normalization = dense_data.normalization_methods(data.normalization, channel_names)
        reasons["normalization"] = "CT windowing for CT channels, foreground z-score per image otherwise" \
            if is_auto(data.normalization) else "from the configuration"
        target = self.plan_target(fingerprint, config, reasons)
        net = ComponentSettings.network(config)
        name = self._network_name(net.name, device, reasons)
        args = network_arguments(name, len(channel_names), self.out_channels(target), list(reversed(size)),
                                 list(reversed(spacing)), net.args if name == NETWORKS.canonical(net.name) else {})
        loss = ComponentSettings.loss(config).chosen(self.default_loss)
        return {"channel_names": channel_names, "spacing": spacing, "input_size": size,
                "normalization": normalization, "network": {"name": name, "args": args}, "loss": loss, **target}

    def network_choices(self) -> list[str]:
        return [name for name in NETWORKS.names() if outputs_vector(name)]

    batch_why = f"{CASES_PER_STEP} whole images per step: batch norm and a case-level loss need several cases"

    def training_defaults(self, plan, fingerprint, device):
        """Several whole images per step (batch norm; a case-level loss over two is too noisy), AdamW 0.003."""
        size = CaseLevelPlanSection.of(plan).input_size
        return whole_input_defaults(self.preferred_batch(plan), 3e-3, int(np.prod(size)), device,
                                    self.batch_why, "AdamW for a small whole-image network at 8 cases per step")

    def preferred_batch(self, plan: dict) -> int:
        return CASES_PER_STEP

    def _network_name(self, configured: str, device: str, reasons: dict) -> str:
        name = NETWORKS.canonical(configured)
        if outputs_vector(name):
            reasons["network"] = "from the configuration"
            return name
        if name != CONFIG_DEFAULT_NETWORK:
            vectors = [n for n in NETWORKS.names() if outputs_vector(n)]
            raise DeepMedError(f"network '{name}' maps an image to an image; {self.name} needs a network with one "
                               f"output per case: {', '.join(vectors)}")
        chosen = DEFAULT_NETWORK["cpu" if device == "cpu" else "gpu"]
        reasons["network"] = f"{chosen}: one output vector per case" + (" (small: CPU)" if device == "cpu" else "")
        return chosen

    # ---- data ------------------------------------------------------------------------------------------
    def prepare_data(self, loaded_train, loaded_val, dataset, plan, config) -> PreparedData:
        section = CaseLevelPlanSection.of(plan)
        grid = (section.spacing, section.input_size)
        raw = {"train": [{"image": to_input_grid(ch, *grid), "label": None} for _, ch, _ in loaded_train],
               "val": [{"image": to_input_grid(ch, *grid), "label": None} for _, ch, _ in loaded_val]}
        methods = section.normalization
        norm_stats = dense_data.fit_normalization(raw["train"], methods, False)
        problems: list[str] = []
        targets = {part: [self._encoded(case_id, value, plan, problems) for case_id, _, value in loaded]
                   for part, loaded in (("train", loaded_train), ("val", loaded_val))}
        if problems:
            raise DeepMedError(_one_line([f"{dataset.source or dataset.name}: {p}" for p in problems]))
        target_stats = self.target_statistics(targets["train"])
        items = {part: [{"id": case_id, "image": normalize_image(entry["image"], methods, norm_stats),
                         "target": self.scaled(target, target_stats)}
                        for (case_id, _, _), entry, target in zip(loaded, raw[part], targets[part])]
                 for part, loaded in (("train", loaded_train), ("val", loaded_val))}
        return PreparedData(items["train"], items["val"], {"norm_stats": norm_stats, "target_stats": target_stats},
                            sample_weights=self.sample_weights(targets["train"], config))

    def _encoded(self, case_id: str, value, plan: dict, problems: list[str]) -> np.ndarray:
        try:
            return self.encode(value, plan)
        except ValueError as exc:
            problems.append(f"case {case_id}: {exc}")
            return np.zeros(1, dtype=np.float32)

    def training_transform(self, plan, config):
        steps = augmentation_transforms(AugmentationSettings.from_config(config), False, keys=("image",))
        return mt.Compose([*steps, mt.ToTensord(("image",), track_meta=False)])

    # ---- parts and steps -------------------------------------------------------------------------------
    def build_parts(self, plan, config, fitted):
        model = build_network(plan.network.name, plan.network.plain_args())
        loss = build_loss(plan.loss, plan.network.args["out_channels"], ComponentSettings.loss(config).args)
        return Parts({"model": model}, {"model": build_optimizer(config, model.parameters())}, {"main": loss})

    def train_step(self, parts, batch, step):
        image, target = step.to_device(torch.as_tensor(batch["image"]), torch.as_tensor(batch["target"]))
        with step.autocast():
            output = parts.networks["model"](image)
        loss = parts.losses["main"](output.float(), target)
        step.optimize(loss, parts.optimizers["model"])
        return {"loss": float(loss.detach().item())}

    def validate_case(self, parts, item, plan, fitted, device):
        with torch.no_grad():
            output = parts.network()(torch.from_numpy(item["image"])[None].to(device)).float()
        return self.case_result(self.activation(output)[0].cpu().numpy(), item["target"], fitted["target_stats"])

    # ---- the card and inference ------------------------------------------------------------------------
    def card_fields(self, plan, fitted, dataset, config):
        section = CaseLevelPlanSection.of(plan)
        return {
            "inputs": [{"name": name, "modality": name, "normalization": method, "statistics": stats}
                       for name, method, stats in zip(section.channel_names, section.normalization,
                                                      fitted["norm_stats"])],
            "spacing": section.spacing,
            "patch_size": section.input_size,  # the whole image's input grid (x, y, z voxels), centred per case
            "orientation": "LPS",
            "network": plan.network.to_json(),
            **self.target_card_fields(plan, fitted["target_stats"], config),
        }

    def inference_parts(self, card, model_dir):
        return {"model": build_network(card.network.name, card.network.args)}

    def predict(self, members, inputs, card, device, options):
        channels = input_channels(inputs, card, options.get("model_name", "model"))
        image = case_input(channels, list(card.spacing), list(card.patch_size),
                           [channel.normalization for channel in card.inputs],
                           [channel.statistics for channel in card.inputs])
        tensor = torch.from_numpy(image)[None].to(device)
        with torch.no_grad():
            outputs = [self.activation(member["model"](tensor).float())[0].cpu().numpy() for member in members]
        return Prediction(values=self.decode(np.mean(outputs, axis=0), card))

    def write_prediction(self, prediction, path):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(prediction.values), lineterminator="\n")
        writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in prediction.values.items()})
        return write_text_atomic(Path(path), buffer.getvalue())

    # ---- hooks of the case-level tasks -----------------------------------------------------------------
    value_hint: str = ""

    @abstractmethod
    def value_problem(self, value, labels: dict[str, int]) -> str:
        """What is wrong with a case's manifest ``value`` (empty when nothing is), before any image is read."""

    @abstractmethod
    def plan_target(self, fingerprint: dict, config: dict, reasons: dict) -> dict:
        """Plan entries of the target (the class list)."""

    @abstractmethod
    def out_channels(self, target_plan: dict) -> int:
        """Network outputs per case."""

    @abstractmethod
    def encode(self, value, plan: dict) -> np.ndarray:
        """A manifest value -> the target array of one item (ValueError with the reason when it cannot)."""

    def target_statistics(self, targets: list[np.ndarray]) -> dict:
        """Statistics of the training targets kept in the card (e.g. the scaling of values)."""
        return {}

    def scaled(self, target: np.ndarray, stats: dict) -> np.ndarray:
        return target

    def sample_weights(self, targets: list[np.ndarray], config: dict) -> list[float] | None:
        return None

    @abstractmethod
    def activation(self, output: torch.Tensor) -> torch.Tensor:
        """Network output (B, outputs) -> what is averaged over an ensemble (probabilities, scaled values)."""

    @abstractmethod
    def case_result(self, activation: np.ndarray, target: np.ndarray, stats: dict) -> dict[str, float]:
        """One validation case: the prediction and the reference, as numbers for ``summarize_validation``."""

    @abstractmethod
    def decode(self, activation: np.ndarray, card: ModelCard) -> dict:
        """The averaged activation -> the table row of one case."""

    @abstractmethod
    def target_card_fields(self, plan: dict, stats: dict, config: dict) -> dict:
        """Card fields of the target (class labels, value statistics)."""


@APPLICATIONS.register("classification", "one class per case from the whole image: class + probabilities out, "
                                         "cross-entropy / focal losses")
class ClassificationApplication(CaseLevelApplication):
    name = "classification"
    key_metric = "balanced_accuracy"
    higher_is_better = True
    default_loss = "cross_entropy"
    config_defaults = {"classes": [], "balanced_sampling": True}
    demo = "deepmed.applications.demos.case_level:classification_demo"
    value_hint = "a class name per training case"

    def metric_names(self):
        return ("balanced_accuracy", "auc")

    def value_problem(self, value, labels):
        if not labels:
            return ""  # the classes may come from task.classes: checked when planned
        known = (isinstance(value, str) and value in labels) or (isinstance(value, int) and value in labels.values())
        return "" if known else _unknown_class(value, list(labels))

    def plan_target(self, fingerprint, config, reasons):
        task = ClassificationTask.from_config(config)
        configured = [str(c) for c in task.classes]
        if configured:
            classes, values, reasons["classes"] = configured, list(range(len(configured))), "task.classes"
        else:
            declared = sorted(fingerprint["declared_labels"].items(), key=lambda item: item[1])
            classes, values = [n for n, _ in declared], [v for _, v in declared]
            reasons["classes"] = "the manifest's labels"
        if len(classes) < 2:
            raise DeepMedError(f"{self.name} needs at least two classes, declared by task.classes=[a, b] or the "
                               f"manifest's 'labels' ({{\"a\": 0, \"b\": 1}}); got {classes or 'none'}")
        balanced = task.balanced_sampling
        reasons["sampling"] = "task.balanced_sampling: every class drawn equally often" if balanced else \
            "every case equally often (task.balanced_sampling=false)"
        return {"classes": classes, "class_values": values, "sampling": "class_balanced" if balanced else "uniform"}

    def out_channels(self, target_plan):
        return len(ClassesPlanSection.of(target_plan).classes)

    def preferred_batch(self, plan):
        return max(CASES_PER_STEP, CASES_PER_CLASS * len(ClassesPlanSection.of(plan).classes))

    batch_why = (f"{CASES_PER_CLASS} cases of each class per step (at least {CASES_PER_STEP}): with 2 the "
                 "cross-entropy is too noisy to settle in a short budget (issue 17: balanced accuracy 0.75-0.95 "
                 "over four runs with 2, 0.95 every time with 8)")

    def encode(self, value, plan):
        section = ClassesPlanSection.of(plan)
        if isinstance(value, str) and value in section.classes:
            return np.asarray([section.classes.index(value)], dtype=np.int64)
        if isinstance(value, int) and value in section.values():
            return np.asarray([section.values().index(value)], dtype=np.int64)
        raise ValueError(_unknown_class(value, section.classes))

    def sample_weights(self, targets, config):
        """Class-balanced: every class drawn equally often, whatever its number of cases."""
        if not ClassificationTask.from_config(config).balanced_sampling:
            return None
        indices = [int(t[0]) for t in targets]
        counts = np.bincount(indices)
        return [1.0 / counts[i] for i in indices]

    def activation(self, output):
        return torch.softmax(output, dim=1)

    def case_result(self, activation, target, stats):
        return {"target": float(target[0]), **{f"p{i}": float(p) for i, p in enumerate(activation)}}

    def summarize_validation(self, per_case):
        n_classes = sum(1 for key in per_case[0] if key.startswith("p"))
        probabilities = [[case[f"p{i}"] for i in range(n_classes)] for case in per_case]
        metrics = classification_metrics([int(case["target"]) for case in per_case], probabilities,
                                         [str(i) for i in range(n_classes)])
        metrics.pop("confusion")
        return metrics

    def decode(self, activation, card):
        names = [label.name for label in card.labels]
        return {"class": names[int(np.argmax(activation))],
                **{f"p_{name}": float(p) for name, p in zip(names, activation)}}

    def target_card_fields(self, plan, stats, config):
        section = ClassesPlanSection.of(plan)
        return {"labels": [{"value": int(value), "name": name, "color": label_colour(index + 1)}
                           for index, (name, value) in enumerate(zip(section.classes, section.values()))]}


allow_for(ClassificationApplication.name, CASE_LABEL_LOSSES)
