"""Conditional GAN (``cgan``): volumes generated from case-level condition values (NiftyNet's images from a pose).

Training data: each training entry's image(s) and its ``value``, the list of condition values (one number or
a list; names from ``task.conditions``). Whole images are resampled onto one planned grid (``task.image_size``
voxels per axis over the median box of the cases; the card's ``output_grid``), intensities mapped to [-1, 1]
(0.5/99.5 percentiles of the training voxels), conditions to [-1, 1] (their training range).

The recipe (see ``docs/conditional_gan.md``): a DCGAN-shaped generator with the condition concatenated to the
noise and as FiLM in every block; a spectral-normalised projection discriminator with an auxiliary head that
regresses the condition; hinge loss; Adam(0.5, 0.999). The generator's loss adds the auxiliary condition error
and an L1 term towards the real image of the same condition (pix2pix-style), which fixes the shape early and
keeps a short CPU run stable. One ``train_step`` = a discriminator step, then a generator step.

Inference (mode ``generate``, inputs ``conditions``): ``deepmed infer --model M --condition 6,2 -o gen.nii.gz
[--seed S] [--count N]`` writes one volume on the card's ``output_grid`` (``--count`` > 1: N volumes stacked
along a fourth axis). Values outside the training range are generated with a warning (extrapolation).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from deepmed.applications import fixed_grid
from deepmed.applications.base import APPLICATIONS, Parts, Prediction, PreparedData, StepContext, TrainableApplication
from deepmed.applications.plan_sections import ConditionalGanPlanSection
from deepmed.applications.task_settings import ConditionalGanTask
from deepmed.data.case_io import read_case
from deepmed.errors import DeepMedError
from deepmed.evaluation import generation_metrics as measures
from deepmed.io.image_io import write_image
from deepmed.networks import build_network
from deepmed.planning.batch import TrainingDefaults, whole_input_defaults

PERCENTILES = (0.5, 99.5)  # intensity range mapped onto [-1, 1]
MODE = {"name": "generate", "output_kind": "image", "inputs": "conditions",
        "description": "a volume generated for the given condition values (--condition, --seed, --count)"}


def condition_values(case) -> list[float]:
    """A case's condition values (its manifest ``value``: a number or a list of numbers)."""
    value = case.value if isinstance(case.value, list) else [case.value]
    if not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise DeepMedError(f"case {case.id}: 'value' must hold the condition values (a number or a list of "
                           f"numbers), got {case.value!r}")
    return [float(v) for v in value]


def scale(values, low, high):
    """``values`` from [low, high] to [-1, 1] (a constant range maps to 0)."""
    values, low, high = np.asarray(values, np.float32), np.asarray(low, np.float32), np.asarray(high, np.float32)
    span = np.where(high > low, high - low, 1.0)
    return np.where(high > low, 2 * (values - low) / span - 1, 0.0).astype(np.float32)


def unscale(values, low, high):
    return ((np.asarray(values, np.float32) + 1) / 2 * (high - low) + low).astype(np.float32)


@APPLICATIONS.register("cgan", "conditional GAN: a volume generated from condition values (--condition)")
class ConditionalGanApplication(TrainableApplication):
    name = "cgan"
    target_kind = "image"
    output_kind = "image"
    key_metric = "shape_error"
    higher_is_better = False
    default_loss = "hinge"
    inference_networks = ("generator",)
    demo = "deepmed.applications.demos.conditional_gan:main"
    loss_weights = {"auxiliary": 1.0, "reconstruction": 10.0}  # set from the task section by build_parts
    config_defaults = {
        "conditions": [],            # names of the condition values (default condition_0, condition_1, ...)
        "units": [],                 # their units (optional, shown in the card and in Slicer)
        "image_size": 32,            # voxels per axis of the generated volume (4 times a power of two)
        "latent_dim": 16,
        "generator_channels": 32,
        "discriminator_channels": 32,
        "generator_lr": 5e-4,
        "discriminator_lr": 2e-4,
        "reconstruction_weight": 10.0,  # L1 towards the real image of the same condition
        "auxiliary_weight": 1.0,        # condition regression by the discriminator's auxiliary head
    }

    # ---- before training -------------------------------------------------------------------------
    def check_dataset(self, dataset) -> None:
        where = dataset.source or dataset.name
        if not dataset.training:
            raise DeepMedError(f"{where}: no training cases")
        counts = set()
        for case in dataset.training:
            if case.value is None:
                raise DeepMedError(f"{where}: case {case.id} has no 'value' (its condition values)")
            try:
                counts.add(len(condition_values(case)))
            except DeepMedError as exc:
                raise DeepMedError(f"{where}: {exc}") from None
        if len(counts) > 1:
            raise DeepMedError(f"{where}: every case needs the same number of condition values, got "
                               f"{', '.join(map(str, sorted(counts)))}")

    def load_cases(self, cases):
        return [(case.id, read_case(case, with_label=False)[0], condition_values(case)) for case in cases]

    def fingerprint(self, loaded, dataset):
        values = np.asarray([c for _, _, c in loaded], dtype=np.float64)
        names = [dataset.channel_names.get(str(i), f"channel_{i}") for i in range(len(loaded[0][1]))]
        return {"name": dataset.name, "cases": len(loaded), "channel_names": names,
                "box": fixed_grid.box_summary([channels[0] for _, channels, _ in loaded]),
                "condition_min": values.min(axis=0).tolist(), "condition_max": values.max(axis=0).tolist()}

    def plan(self, fingerprint, config, device, reasons):
        task = ConditionalGanTask.from_config(config)
        count = len(fingerprint["condition_min"])
        names = list(task.conditions) or [f"condition_{i}" for i in range(count)]
        if len(names) != count:
            raise DeepMedError(f"task.conditions names {len(names)} condition(s) ({', '.join(names)}), the cases "
                               f"have {count} value(s) each")
        size = int(task.image_size)
        grid = fixed_grid.plan_grid(fingerprint["box"], [size] * 3)
        reasons["grid"] = (f"{size}^3 voxels (task.image_size) over the median box of the training cases "
                           f"({', '.join(f'{e:.0f}' for e in fingerprint['box']['extent'])} mm)")
        channels = len(fingerprint["channel_names"])
        shape = [size] * 3
        generator = {"conditions": count, "image_size": shape, "latent_dim": int(task.latent_dim),
                     "channels": int(task.generator_channels), "out_channels": channels}
        discriminator = {"conditions": count, "image_size": shape, "channels": int(task.discriminator_channels),
                         "in_channels": channels}
        reasons["network"] = "generator: noise + conditions (concatenated, as channels beside the coordinates, " \
                             "FiLM) -> volume; discriminator: spectral-norm projection with a condition head; hinge"
        reasons["optimizers"] = "Adam (0.5, 0.999) per network at task.generator_lr / task.discriminator_lr " \
                                "(the optimizer section is not used)"
        units = list(task.units) + [""] * count
        return {"channel_names": fingerprint["channel_names"], "grid": grid,
                "conditions": [{"name": n, "min": lo, "max": hi, **({"unit": u} if u else {})}
                               for n, lo, hi, u in zip(names, fingerprint["condition_min"],
                                                       fingerprint["condition_max"], units)],
                "network": {"name": "conditional_generator", "args": generator},
                "discriminator": {"name": "projection_discriminator", "args": discriminator},
                "optimizers": {"generator": {"name": "adam", "lr": float(task.generator_lr), "betas": [0.5, 0.999]},
                               "discriminator": {"name": "adam", "lr": float(task.discriminator_lr),
                                                 "betas": [0.5, 0.999]}},
                "loss": "hinge"}

    def training_defaults(self, plan, fingerprint, device):
        """Four generated and four real volumes per step; the learning rates are the networks' own (task.*)."""
        size = int(np.prod(plan.network.args["image_size"]))
        lr = ConditionalGanPlanSection.of(plan).optimizer("generator").lr
        defaults = whole_input_defaults(4, lr, 2 * size, device,
                                        "four real and four generated volumes per step (the discriminator sees "
                                        "both)", "")
        return TrainingDefaults(defaults.batch_size, lr, defaults.batch_reason,
                                f"{lr:g}: the generator's (task.generator_lr; "
                                f"the discriminator: task.discriminator_lr); optimizer.lr is not used")

    def prepare_data(self, loaded_train, loaded_val, dataset, plan, config) -> PreparedData:
        section = ConditionalGanPlanSection.of(plan)
        grid = section.grid
        low = [c["min"] for c in section.conditions]
        high = [c["max"] for c in section.conditions]

        def arrays(loaded):
            return [(case_id, np.stack([fixed_grid.on_grid(ch, grid) for ch in channels]), values)
                    for case_id, channels, values in loaded]

        train, val = arrays(loaded_train), arrays(loaded_val)
        intensity = []
        for c in range(len(section.channel_names)):
            pooled = np.concatenate([image[c].reshape(-1) for _, image, _ in train])
            lo, hi = np.percentile(pooled, PERCENTILES)
            intensity.append({"low": float(lo), "high": float(max(hi, lo + 1e-6))})
        threshold = measures.foreground_threshold([image[0] for _, image, _ in train])

        def items(cases):
            result = []
            for index, (case_id, image, values) in enumerate(cases):
                scaled = np.stack([np.clip(scale(image[c], r["low"], r["high"]), -1, 1)
                                   for c, r in enumerate(intensity)])
                result.append({"id": case_id, "image": scaled, "condition": scale(values, low, high),
                               "seed": index})
            return result

        fitted = {"intensity": intensity, "threshold": threshold, "conditions": section.conditions, "grid": grid}
        return PreparedData(items(train), items(val), fitted)

    def training_transform(self, plan, config):
        return _identity  # no augmentation: flips or shifts would change what the condition means

    def build_parts(self, plan, config, fitted):
        task, section = ConditionalGanTask.from_config(config), ConditionalGanPlanSection.of(plan)
        generator = build_network(plan.network.name, plan.network.plain_args())
        discriminator_choice = section.discriminator_network()
        discriminator = build_network(discriminator_choice.name, discriminator_choice.plain_args())
        self.loss_weights = {"auxiliary": float(task.auxiliary_weight),
                             "reconstruction": float(task.reconstruction_weight)}
        networks = {"generator": generator, "discriminator": discriminator}
        optimizers = {name: torch.optim.Adam(net.parameters(), lr=section.optimizer(name).lr,
                                             betas=tuple(section.optimizer(name).betas))
                      for name, net in networks.items()}
        return Parts(networks, optimizers, {"reconstruction": torch.nn.L1Loss(), "auxiliary": torch.nn.MSELoss()})

    # ---- training ----------------------------------------------------------------------------------
    def train_step(self, parts: Parts, batch: dict, step: StepContext) -> dict[str, float]:
        real, condition = step.to_device(torch.as_tensor(batch["image"]).float(),
                                         torch.as_tensor(batch["condition"]).float())
        generator, discriminator = parts.networks["generator"], parts.networks["discriminator"]
        weights = self.loss_weights
        latent = parts.network("generator").latent_dim
        noise = torch.randn(real.shape[0], latent, device=real.device)
        n = real.shape[0]
        with step.autocast():  # discriminator: real and generated in one pass
            fake = generator(noise, condition)
            score, estimate = discriminator(torch.cat([real, fake.detach()]), torch.cat([condition, condition]))
            d_adversarial = torch.relu(1 - score[:n]).mean() + torch.relu(1 + score[n:]).mean()
            d_loss = d_adversarial + weights["auxiliary"] * parts.losses["auxiliary"](estimate[:n].float(), condition)
        step.optimize(d_loss, parts.optimizers["discriminator"], "discriminator")
        with step.autocast():
            score, estimate = discriminator(fake, condition)
            g_adversarial = -score.mean()
            g_loss = (g_adversarial + weights["auxiliary"] * parts.losses["auxiliary"](estimate.float(), condition)
                      + weights["reconstruction"] * parts.losses["reconstruction"](fake.float(), real))
        step.optimize(g_loss, parts.optimizers["generator"], "generator")
        return {"loss": float(g_loss.detach()), "d_loss": float(d_loss.detach()),
                "g_adversarial": float(g_adversarial.detach())}

    def validate_case(self, parts, item, plan, fitted, device):
        """The case's condition generated with a fixed noise: the shape error (mm) against the real image."""
        generator = parts.network("generator")
        condition = torch.from_numpy(np.asarray(item["condition"], np.float32))[None].to(device)
        noise = torch.randn(1, generator.latent_dim, generator=torch.Generator().manual_seed(int(item["seed"])))
        with torch.no_grad():
            fake = generator(noise.to(device), condition)[0, 0].float().cpu().numpy()
        low, high = fitted["intensity"][0]["low"], fitted["intensity"][0]["high"]
        generated, real = unscale(fake, low, high), unscale(item["image"][0], low, high)
        grid, threshold = fitted["grid"], fitted["threshold"]
        mine = measures.shape_properties(fixed_grid.array_on_grid(generated, grid), threshold)
        truth = measures.shape_properties(fixed_grid.array_on_grid(real, grid), threshold)
        errors = [abs(mine[k] - truth[k]) for k in measures.SHAPE_KEYS]
        extent = max(s * n for s, n in zip(grid["spacing"], grid["size"]))
        shape_error = float(np.mean(errors)) if all(math.isfinite(e) for e in errors) else extent
        return {"shape_error": shape_error, "l1": float(np.abs(generated - real).mean())}

    # ---- the card and inference ---------------------------------------------------------------------
    def card_fields(self, plan, fitted, dataset, config):
        return {"inputs": [], "modes": [dict(MODE)], "conditions": fitted["conditions"],
                "output_grid": fitted["grid"], "orientation": "LPS", "network": plan.network.to_json(),
                "settings": {"channels": ConditionalGanPlanSection.of(plan).channel_names,
                             "intensity": fitted["intensity"], "threshold": fitted["threshold"]}}

    def inference_parts(self, card, model_dir):
        return {"generator": build_network(card.network.name, card.network.args)}

    def predict(self, members, inputs, card, device, options):
        """``count`` volumes (default 1) for ``condition`` from noise seeded by ``seed`` (default 0); the first
        member of an ensemble generates (averaging generators would blur)."""
        conditions = card.conditions
        values = [float(v) for v in options["condition"]]
        for entry, value in zip(conditions, values):
            low = -math.inf if entry.min is None else entry.min
            high = math.inf if entry.max is None else entry.max
            if not low <= value <= high:
                print(f"deepmed: warning: condition {entry.name}={value:g} is outside the training range "
                      f"[{low:g}, {high:g}]; the generator extrapolates", file=sys.stderr)
        low = [-1.0 if c.min is None else c.min for c in conditions]
        high = [1.0 if c.max is None else c.max for c in conditions]
        count = int(options.get("count") or 1)
        if count < 1:
            raise DeepMedError(f"--count must be at least 1, got {count}")
        generator = members[0]["generator"]
        seed = 0 if options.get("seed") is None else int(options["seed"])
        noise = torch.randn(count, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
        condition = torch.from_numpy(scale(values, low, high))[None].repeat(count, 1)
        with torch.no_grad():
            fakes = generator(noise.to(device), condition.to(device)).float().cpu().numpy()
        grid, intensity = card.output_grid, card.settings["intensity"]
        images = [self._image(fake, grid, intensity) for fake in fakes]
        return Prediction(output=images[0], frames=images if count > 1 else None)

    @staticmethod
    def _image(fake: np.ndarray, grid: dict, intensity: list[dict]) -> sitk.Image:
        channels = [fixed_grid.array_on_grid(unscale(fake[c], r["low"], r["high"]), grid)
                    for c, r in enumerate(intensity)]
        return channels[0] if len(channels) == 1 else sitk.Compose(channels)

    def write_prediction(self, prediction, path):
        image = prediction.output if not prediction.frames else sitk.JoinSeries(prediction.frames)
        return write_image(image, Path(path))

    def metric_names(self):
        return ("shape_error", "l1")


def _identity(item: dict) -> dict:
    return item
