"""Representation learning: a (variational) autoencoder on whole images (NiftyNet's autoencoder application,
DLTK's convolutional autoencoder).

Each case is resampled as a whole onto ``input_size`` voxels over its own box (``whole_image``) and
normalised with a z-score fitted on all training voxels. The encoder and the decoder are the two halves of
MONAI's ``VarAutoEncoder``, trained as two networks with reconstruction error + ``beta`` x KL
(``losses/latent.py``). Modes (the model card's ``modes``):

* ``reconstruct`` (default): images -> the decoded posterior mean, resampled onto the input's exact grid;
* ``encode``: images -> the latent vector (posterior mean) as a table row (CSV, or ``.npy``);
* ``sample``: nothing -> ``--count`` images decoded from N(0, I) codes (``--seed``) on the card's ``output_grid``,
  as a sequence (variational models only);
* ``interpolate``: two cases -> ``--steps`` images decoded along the straight line between their codes, on
  the card's ``output_grid``, as a sequence (the first and last frames are the two reconstructions).

A sequence is written as one 4D image (NIfTI, NRRD or MetaImage; frames along the 4th axis; each frame keeps
the 3D grid).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from deepmed.applications import whole_image
from deepmed.applications.base import APPLICATIONS, Parts, Prediction, PreparedData, TrainableApplication
from deepmed.applications.inputs import input_channels
from deepmed.applications.plan_sections import AutoencoderPlanSection
from deepmed.applications.task_settings import AutoencoderTask
from deepmed.data.case_io import read_case
from deepmed.errors import DeepMedError
from deepmed.io.image_io import write_image
from deepmed.losses import LOSSES, build_loss
from deepmed.losses.latent import LatentLoss
from deepmed.model.card import ModelCard
from deepmed.networks import build_network
from deepmed.optim import build_optimizer
from deepmed.planning.batch import whole_input_defaults
from deepmed.planning.settings import ComponentSettings
from deepmed.transforms.preprocessing import oriented
from deepmed.utils.atomic import atomic_path, write_text_atomic

NAME = "autoencoder"
SEQUENCE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")  # formats that hold a 4D image
CPU_SIZE, GPU_SIZE = 32, 64  # longest axis of an auto input size


@LOSSES.register("vae_mse", "variational autoencoder: mean squared reconstruction error + beta x KL",
                 applications=(NAME,))
def _vae_mse(num_classes, **args):
    return LatentLoss("mse", **args)


@LOSSES.register("vae_l1", "variational autoencoder: mean absolute reconstruction error + beta x KL",
                 applications=(NAME,))
def _vae_l1(num_classes, **args):
    return LatentLoss("l1", **args)


def auto_input_size(extent_xyz: list[float], longest: int, levels: int) -> list[int]:
    """Voxels per axis in proportion to the physical extent, the longest axis ``longest``, each a multiple
    of 2**levels (so that every strided level halves it exactly)."""
    step = 2 ** levels
    largest = max(extent_xyz)
    return [max(step, round(longest * e / largest / step) * step) for e in extent_xyz]


def latent_names(size: int) -> list[str]:
    return [f"z{i}" for i in range(size)]


@APPLICATIONS.register(NAME, "representation learning: (variational) autoencoder; encode, reconstruct, sample, "
                             "interpolate in latent space")
class AutoencoderApplication(TrainableApplication):
    name = NAME
    target_kind = "none"
    output_kind = "scalar_volume"
    key_metric = "mse"
    higher_is_better = False
    default_loss = "vae_mse"
    inference_networks = ("encoder", "decoder")
    output_suffix = ".nii.gz"
    demo = "deepmed.applications.demos.autoencoder:run"
    config_defaults = {
        "input_size": [],        # [x, y, z] voxels of the whole image; [] or auto: planned (longest axis 32 on CPU,
                                 # 64 on GPU, the others in proportion to the median extent)
        "latent_size": 8,        # length of the code
        "variational": True,     # false: a plain autoencoder (no KL term, no sampling)
        "beta": 1e-4,            # weight of the KL term (nats per case) against the per-voxel reconstruction error
        "channels": [8, 16, 32],  # feature maps of the encoder levels (each level halves the size)
    }

    # ---- before training -------------------------------------------------------------------------
    def load_cases(self, cases):
        return [(case.id, read_case(case, with_label=False)[0]) for case in cases]

    def fingerprint(self, loaded, dataset):
        extents = []
        for _, channels in loaded:
            source = oriented(channels[0])
            extents.append([n * s for n, s in zip(source.GetSize(), source.GetSpacing())])
        n_channels = len(loaded[0][1])
        names = [dataset.channel_names.get(str(i), f"channel_{i}") for i in range(n_channels)]
        return {"name": dataset.name, "cases": len(loaded), "channel_names": names,
                "extent": np.median(extents, axis=0).round(3).tolist()}

    def plan(self, fingerprint, config, device, reasons):
        task = AutoencoderTask.from_config(config)
        channels = [int(c) for c in task.channels]
        if task.input_size in ([], "auto"):
            longest = GPU_SIZE if device == "cuda" else CPU_SIZE
            size = auto_input_size(fingerprint["extent"], longest, len(channels))
            reasons["input_size"] = (f"median extent {fingerprint['extent']} mm at {longest} voxels on the longest "
                                     f"axis ({device}), multiples of {2 ** len(channels)}")
        else:
            size = task.input_size
            if not (isinstance(size, list) and len(size) == 3 and all(isinstance(n, int) and n > 0 for n in size)):
                raise DeepMedError(f"config: 'task.input_size' must be [] (planned) or three positive integers "
                                   f"[x, y, z], got {size!r}")
            reasons["input_size"] = "from the configuration"
        if any(n % 2 ** len(channels) for n in size):
            raise DeepMedError(f"task.input_size: each axis must be a multiple of {2 ** len(channels)} "
                               f"({len(channels)} levels), got {size}")
        args = {"spatial_dims": 3, "in_shape": [len(fingerprint["channel_names"]), *reversed(size)],
                "out_channels": len(fingerprint["channel_names"]), "latent_size": int(task.latent_size),
                "channels": channels, "strides": [2] * len(channels), "norm": "batch", "use_sigmoid": False,
                **ComponentSettings.network(config).args}
        reasons["network"] = "MONAI VarAutoEncoder cut into encoder and decoder (two networks)"
        loss = ComponentSettings.loss(config).chosen(self.default_loss)
        return {"channel_names": fingerprint["channel_names"], "input_size": size,
                "network": {"name": "vae", "args": args}, "loss": loss, "variational": bool(task.variational),
                "beta": float(task.beta) if task.variational else 0.0}

    def training_defaults(self, plan, fingerprint, device):
        """Batch-normalised encoder and decoder on small whole images: 16 per step, AdamW at 0.003."""
        return whole_input_defaults(16, 3e-3, int(np.prod(AutoencoderPlanSection.of(plan).input_size)), device,
                                    "16 whole images per step: the encoder and decoder use batch norm, whose "
                                    "statistics need many cases, and the inputs are small",
                                    "AdamW for a small VAE from scratch at 16 images per step")

    def prepare_data(self, loaded_train, loaded_val, dataset, plan, config):
        size = AutoencoderPlanSection.of(plan).input_size
        train = [to_item(case_id, channels, size) for case_id, channels in loaded_train]
        val = [to_item(case_id, channels, size) for case_id, channels in loaded_val]
        stacked = np.stack([item["image"] for item in train]).astype(np.float64)
        means, stds = stacked.mean(axis=(0, 2, 3, 4)), np.maximum(stacked.std(axis=(0, 2, 3, 4)), 1e-8)
        low, high = stacked.min(axis=(0, 2, 3, 4)), stacked.max(axis=(0, 2, 3, 4))
        stats = [{"mean": float(m), "std": float(s), "range": float(h - lo)}
                 for m, s, lo, h in zip(means, stds, low, high)]
        for item in train + val:
            item["image"] = normalise(item["image"], stats)
        grid = whole_image.median_grid([channels[0] for _, channels in loaded_train], size)
        return PreparedData(train, val, {"statistics": stats, "output_grid": grid})

    def training_transform(self, plan, config):
        return lambda item: item  # whole images; the variational code's noise is the augmentation

    def build_parts(self, plan, config, fitted):
        args = plan.network.plain_args()
        encoder, decoder = build_network("vae_encoder", args), build_network("vae_decoder", args)
        beta = AutoencoderPlanSection.of(plan).beta
        loss = build_loss(plan.loss, 0, {"beta": beta, **ComponentSettings.loss(config).args})
        parameters = list(encoder.parameters()) + list(decoder.parameters())
        return Parts({"encoder": encoder, "decoder": decoder}, {"autoencoder": build_optimizer(config, parameters)},
                     {"main": loss})

    # ---- training ----------------------------------------------------------------------------------
    def train_step(self, parts, batch, step):
        image = step.to_device(torch.as_tensor(batch["image"]))
        variational = parts.losses["main"].beta > 0
        with step.autocast():
            mean, logvar = parts.networks["encoder"](image)
            code = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if variational else mean
            output = parts.networks["decoder"](code)
        loss, error, kl = parts.losses["main"](output.float(), image, mean.float(), logvar.float())
        step.optimize(loss, parts.optimizers["autoencoder"], "autoencoder")
        return {"loss": float(loss.detach().item()), "reconstruction": float(error.detach().item()),
                "kl": float(kl.detach().item())}

    def validate_case(self, parts, item, plan, fitted, device):
        image = torch.from_numpy(item["image"])[None].to(device)
        with torch.no_grad():
            output = parts.network("decoder")(parts.network("encoder")(image)[0])
        return reconstruction_metrics(output[0].cpu().numpy(), item["image"], fitted["statistics"])

    def metric_names(self):
        return ("mse", "psnr")

    # ---- the model and inference ---------------------------------------------------------------------
    def card_fields(self, plan, fitted, dataset, config):
        section = AutoencoderPlanSection.of(plan)
        modes = [{"name": "reconstruct", "output_kind": "scalar_volume", "inputs": "images",
                  "description": "the image decoded from its code, on the input's grid"},
                 {"name": "encode", "output_kind": "table", "inputs": "images",
                  "description": f"the latent vector ({plan.network.args['latent_size']} values) of an image"},
                 {"name": "sample", "output_kind": "sequence", "inputs": "none",
                  "description": "--count images decoded from random codes (--seed), on the model's grid"},
                 {"name": "interpolate", "output_kind": "sequence", "inputs": "pair",
                  "description": "--steps images along the straight line between two images' codes"}]
        if not section.variational:
            modes = [m for m in modes if m["name"] != "sample"]  # a plain autoencoder has no prior to sample
        return {
            "inputs": [{"name": name, "modality": name, "normalization": "zscore", "statistics": stats}
                       for name, stats in zip(section.channel_names, fitted["statistics"])],
            "labels": [],
            "network": plan.network.to_json(),
            "modes": modes,
            "output_grid": fitted["output_grid"],
            "settings": {"input_size": section.input_size, "variational": section.variational,
                         "beta": section.beta, "steps": 5, "count": 1, "seed": 0},
        }

    def inference_parts(self, card, model_dir):
        args = card.network.args
        return {"encoder": build_network("vae_encoder", args), "decoder": build_network("vae_decoder", args)}

    def predict(self, members, inputs, card, device, options):
        """One mode of the first model (codes of different models do not mix: an ensemble is not averaged)."""
        networks = members[0]
        mode = options.get("mode") or "reconstruct"
        settings = card.settings
        option = lambda key: settings[key] if options.get(key) is None else options[key]  # noqa: E731
        stats = [channel.statistics for channel in card.inputs]
        if mode in ("sample", "interpolate"):
            output_grid = whole_image.grid_of(card.output_grid)
        if mode == "sample":
            count = _at_least(option("count"), 1, "--count", "sample(s)")
            generator = torch.Generator().manual_seed(int(option("seed")))
            codes = torch.randn(count, card.network.args["latent_size"], generator=generator)
            return Prediction(frames=self._decode(networks, codes, stats, output_grid, device))
        n_channels = len(card.inputs)
        cases = [inputs[:n_channels], inputs[n_channels:]] if mode == "interpolate" else [inputs]
        prepared = [self._prepared(case, card, options.get("model_name", "model")) for case in cases]
        codes = [self._encode(networks, array, device) for array, _, _ in prepared]
        if mode == "encode":
            return Prediction(values=dict(zip(latent_names(len(codes[0])), map(float, codes[0]))))
        if mode == "interpolate":
            steps = _at_least(option("steps"), 2, "--steps", "image(s)")
            weights = torch.linspace(0, 1, steps)[:, None]
            line = (1 - weights) * torch.from_numpy(codes[0]) + weights * torch.from_numpy(codes[1])
            return Prediction(frames=self._decode(networks, line, stats, output_grid, device))
        _, grid, reference = prepared[0]
        decoded = self._decoded_arrays(networks, torch.from_numpy(codes[0])[None], stats, device)[0]
        return Prediction(_joined([whole_image.back_onto(channel, grid, reference) for channel in decoded]))

    def _prepared(self, case: list, card: ModelCard, model_name: str) -> tuple[np.ndarray, sitk.Image, sitk.Image]:
        """One case's channels -> (normalised array at the input size, its box grid, the input's grid)."""
        channels = input_channels(case, card, model_name)
        array, grid = whole_image.to_fixed_size(channels, card.settings["input_size"])
        return normalise(array, [channel.statistics for channel in card.inputs]), grid, channels[0]

    @staticmethod
    def _encode(networks: dict, array: np.ndarray, device) -> np.ndarray:
        with torch.no_grad():
            mean, _ = networks["encoder"](torch.from_numpy(array)[None].to(device))
        return mean[0].cpu().numpy().astype(np.float64)

    @staticmethod
    def _decoded_arrays(networks: dict, codes: torch.Tensor, stats: list, device) -> np.ndarray:
        """Codes (N, latent) -> images (N, C, z, y, x) in the input's intensity units."""
        with torch.no_grad():
            output = networks["decoder"](codes.float().to(device)).cpu().numpy()
        return np.stack([denormalise(image, stats) for image in output])

    def _decode(self, networks, codes, stats, grid, device) -> list[sitk.Image]:
        return [_joined([whole_image.image_on(channel, grid) for channel in image])
                for image in self._decoded_arrays(networks, codes, stats, device)]

    def write_prediction(self, prediction, path):
        path = Path(path)
        if prediction.frames is not None:
            return write_sequence(prediction.frames, path)
        if prediction.values is not None:
            return write_code(prediction.values, path)
        return write_image(prediction.output, path)


# ---- data --------------------------------------------------------------------------------------------
def to_item(case_id: str, channels: list[sitk.Image], size_xyz: list[int]) -> dict:
    array, _ = whole_image.to_fixed_size(channels, size_xyz)
    return {"id": case_id, "image": array}


def normalise(array: np.ndarray, stats: list[dict]) -> np.ndarray:
    """(C, z, y, x) -> z-scores with each channel's training mean and standard deviation."""
    return np.stack([(a - s["mean"]) / s["std"] for a, s in zip(array, stats)]).astype(np.float32)


def denormalise(array: np.ndarray, stats: list[dict]) -> np.ndarray:
    return np.stack([a * s["std"] + s["mean"] for a, s in zip(array, stats)]).astype(np.float32)


def reconstruction_metrics(output: np.ndarray, image: np.ndarray, stats: list[dict]) -> dict[str, float]:
    """MSE in the input's intensity units and PSNR against the training intensity range (normalised arrays)."""
    scale = np.asarray([s["std"] for s in stats])[:, None, None, None]
    mse = float(np.mean(((output - image) * scale) ** 2))
    data_range = max(s["range"] for s in stats)
    return {"mse": mse, "psnr": float(10 * np.log10(data_range ** 2 / max(mse, 1e-20)))}


def _joined(channels: list[sitk.Image]) -> sitk.Image:
    """One channel as it is; several as one vector image (a component per channel)."""
    return channels[0] if len(channels) == 1 else sitk.Compose(channels)


def _at_least(value, minimum: int, flag: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DeepMedError(f"{flag}: expected at least {minimum} {what}, got {value!r}")
    return value


# ---- outputs -----------------------------------------------------------------------------------------
def write_sequence(frames: list[sitk.Image], path: Path) -> Path:
    """Frames (3D, one grid) as one 4D image (NIfTI, NRRD or MetaImage): the 4th axis counts the frames; the 3D
    geometry is kept."""
    if not path.name.lower().endswith(SEQUENCE_SUFFIXES):
        raise DeepMedError(f"{path}: a sequence is written as one 4D image, expected a name ending in "
                           f"{', '.join(SEQUENCE_SUFFIXES)}")
    series = sitk.JoinSeries(frames)
    with atomic_path(path) as temporary:
        sitk.WriteImage(series, str(temporary), True)
    return path


def read_sequence(path: str | Path) -> list[sitk.Image]:
    """The frames of a 4D sequence file (as written by :func:`write_sequence`)."""
    series = sitk.ReadImage(str(path), sitk.sitkFloat32)
    if series.GetDimension() != 4:
        raise DeepMedError(f"{path}: expected a 4D sequence, got a {series.GetDimension()}D image")
    size = list(series.GetSize())
    return [sitk.Extract(series, size[:3] + [0], [0, 0, 0, t]) for t in range(size[3])]


def write_code(values: dict, path: Path) -> Path:
    """A latent vector: ``.npy`` (float64 array) if the name says so, else a one-row CSV (an image name
    such as ``case.nii.gz`` of a batch becomes ``case.csv``)."""
    if path.suffix.lower() == ".npy":
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.save(handle, np.asarray(list(values.values()), dtype=np.float64))
        return path
    if path.suffix.lower() != ".csv":
        path = path.with_name(path.name.split(".")[0] + ".csv")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([list(values), [f"{v:.9g}" for v in values.values()]])
    return write_text_atomic(path, buffer.getvalue())


# ---- the model's grid (evaluation against a baseline on the same arrays) -----------------------------
def model_grid_input(images: list, card: ModelCard) -> np.ndarray:
    """One case's channels on the model's grid (C, z, y, x), in the input's intensity units."""
    return whole_image.to_fixed_size(input_channels(list(images), card, "model"), card.settings["input_size"])[0]


def model_grid_reconstruction(networks: dict, array: np.ndarray, card: ModelCard, device="cpu") -> np.ndarray:
    """The reconstruction of ``array`` (from :func:`model_grid_input`) on the same grid, in the same units."""
    stats = [channel.statistics for channel in card.inputs]
    code = AutoencoderApplication._encode(networks, normalise(array, stats), device)
    return AutoencoderApplication._decoded_arrays(networks, torch.from_numpy(code)[None], stats, device)[0]
