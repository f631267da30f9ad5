"""The application interfaces: everything task-specific, handed to a loop and a predictor that know no task.

Two kinds of application register by name in ``APPLICATIONS`` (built in, or plug-ins):

* :class:`RunnableApplication`: what *running* a model needs. It builds the model's networks from its card
  (:meth:`~RunnableApplication.inference_parts`), predicts one case on the input's grid
  (:meth:`~RunnableApplication.predict`) and writes the result (:meth:`~RunnableApplication.write_prediction`);
  ``output_kind`` says what the result is. Imported models (MONAI bundles, nnU-Net) are this kind only.
* :class:`TrainableApplication` extends it with what *training* needs: what a case's target is
  (``target_kind``) and its own section of the configuration (``config_defaults``, under ``task:``); planning
  (:meth:`~TrainableApplication.plan`), data preparation and random transforms; the named parts it trains
  (:meth:`~TrainableApplication.build_parts`: networks, losses, optimisers); one training step, the validation
  of one case, and the model card fields (:meth:`~TrainableApplication.card_fields`).

:func:`get_application` gives either kind (running a model); everything that trains or plans asks
:func:`get_trainable_application`, which refuses a runnable-only application in one line. The Trainer keeps
only the loop, checkpoints of all parts, progress events, stop/resume and the agreement of ranks. See
``docs/applications.md`` for the minimal plug-in of each kind.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deepmed.applications.plugins import NOT_LOADED
from deepmed.errors import DeepMedError
from deepmed.model.card import ModelCard
from deepmed.planning.batch import TrainingDefaults
from deepmed.utils.registry import Registry

APPLICATIONS = Registry("application")

#: What a case's target can be.
TARGET_KINDS = ("label_map", "scalar_map", "values", "image", "none")
#: What a model produces; the Slicer modules place each kind in the scene (segmentation, volume, table,
#: sequence). ``label_map``/``scalar_volume`` lie on the input's grid, ``image`` on its own grid;
#: ``overlapping_masks``: one binary mask per label, masks may overlap (a vector image, one component each).
OUTPUT_KINDS = ("label_map", "overlapping_masks", "scalar_volume", "table", "image", "sequence")
#: What one inference mode takes: one case's images, nothing, two cases (e.g. latent interpolation), values,
#: or one case's images with clicks (interactive refinement: ``deepmed infer --clicks``).
MODE_INPUTS = ("images", "none", "pair", "conditions", "clicks")


@dataclass
class Parts:
    """The named things one application trains. ``networks`` are checkpointed and (``inference_networks``)
    saved for inference; each optimiser steps the parameters the application gave it."""

    networks: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    losses: dict[str, torch.nn.Module] = field(default_factory=dict)

    def network(self, name: str = "model") -> torch.nn.Module:
        """The network without its DistributedDataParallel wrapper (for validation and saving)."""
        net = self.networks[name]
        return getattr(net, "module", net)


class StepContext:
    """What a training step needs from the loop: device, mixed precision, and one optimiser step."""

    def __init__(self, device: torch.device, amp: bool, clip_norm: float = 12.0, cpu_bf16: bool = False):
        """``amp``: mixed precision on CUDA (bf16 where supported, else float16 with a gradient scaler); with
        ``cpu_bf16`` also bf16 autocast on a CPU with native bf16 (AVX512-BF16 / AMX; detected, not assumed)."""
        from deepmed.volume_inference.sliding import cpu_supports_bf16

        self.device = device
        on_cpu = device.type == "cpu" and cpu_bf16 and cpu_supports_bf16()
        self.amp = amp and (device.type == "cuda" or on_cpu)
        self.dtype = torch.bfloat16 if self.amp and (on_cpu or torch.cuda.is_bf16_supported()) else torch.float16
        self.clip_norm = clip_norm
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def to_device(self, *tensors: torch.Tensor):
        moved = tuple(t.to(self.device, non_blocking=True) for t in tensors)
        return moved[0] if len(moved) == 1 else moved

    def scaler(self, name: str) -> torch.amp.GradScaler:
        if name not in self.scalers:
            self.scalers[name] = torch.amp.GradScaler("cuda", enabled=self.amp and self.dtype == torch.float16)
        return self.scalers[name]

    def optimize(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, name: str = "model") -> None:
        """Backward, gradient clipping and one step of ``optimizer`` (its gradients zeroed first)."""
        scaler = self.scaler(name)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.clip_norm)
        scaler.step(optimizer)
        scaler.update()

    def state_dict(self) -> dict:
        return {name: scaler.state_dict() for name, scaler in self.scalers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, scaler_state in state.items():
            self.scaler(name).load_state_dict(scaler_state)


@dataclass
class PreparedData:
    """Training and validation items (dicts the transforms and ``train_step`` understand) and the fitted
    statistics that the model card keeps for inference (normalisation, target scaling, ...).
    ``sample_weights`` (one per training item, optional) make the loader draw items in proportion to them
    (e.g. class-balanced sampling); without them every item is equally likely."""

    train: list[dict]
    val: list[dict]
    fitted: dict = field(default_factory=dict)
    sample_weights: list[float] | None = None


@dataclass
class Prediction:
    """One case's result. ``output`` is an image on the input's exact grid (label map, scalar volume) or on
    a grid the model defines; ``values`` holds case-level results (a table row); extras are optional."""

    output: object = None
    values: dict | None = None
    probabilities: object = None  # vector image, one component per label (segmentation)
    uncertainty: object = None    # normalised entropy in [0, 1] (segmentation)
    frames: list | None = None    # a series of images (output kind ``sequence``)


class RunnableApplication(ABC):
    """What running a model needs: its networks from the card, one case predicted, the result written.

    Attributes:
        name: registry name, stored in the model card (``application``).
        output_kind: one of ``OUTPUT_KINDS`` (a card's own ``output_kind`` wins).
        output_suffix: file ending of a written prediction (``.nii.gz``, ``.csv``; batch inference names files
            with it).
        instead: for a runnable-only application, what a user who asked to train it can do instead (the
            refusal of :func:`get_trainable_application` says it).
    """

    name: str
    output_kind: str
    output_suffix: str = ".nii.gz"
    instead: str = "train one of the trainable applications (deepmed list applications --trainable)"

    @abstractmethod
    def inference_parts(self, card: dict, model_dir: Path) -> dict[str, torch.nn.Module]:
        """The model's networks, built from its card (or, for an application that keeps its code in the model
        directory, from ``model_dir``); their weights, from ``model.safetensors``, are loaded after."""

    @abstractmethod
    def predict(self, members: list[dict[str, torch.nn.Module]], inputs: list, card: dict, device: torch.device,
                options: dict) -> Prediction:
        """Predict one case from its input images (SimpleITK, one per channel), on the input's exact grid (or
        the grid the card declares). ``members``: the networks of each model of the ensemble (one per
        cross-validation fold; one for a single model), to be averaged."""

    @abstractmethod
    def write_prediction(self, prediction: Prediction, path: Path) -> Path:
        """Write ``prediction`` (image or table) to ``path``; returns the path written."""


class TrainableApplication(RunnableApplication):
    """An application deepmed trains: the runnable part plus planning, data, parts, step and validation.

    Attributes:
        target_kind: one of ``TARGET_KINDS``.
        key_metric: validation metric that selects the best model; ``higher_is_better`` says which way.
        default_loss: loss used when the config says ``auto`` (the loss registry lists the fitting ones).
        config_defaults: this application's own settings (the ``task:`` section of the configuration).
        inference_networks: the parts saved in ``model.safetensors`` for inference.
        demo: ``deepmed demo --app NAME``: "module:function" called as function(out_dir, epochs, progress) ->
            exit code; it makes the demo data, trains, infers and prints the metric against a baseline.
        cpu_bf16_training: with ``training.amp`` on or auto, train in bf16 autocast on CPUs with native bf16
            (the step's loss in float32); an application whose targets need float32 leaves it off.
    """

    target_kind: str
    key_metric: str
    higher_is_better: bool
    default_loss: str
    config_defaults: dict = {}
    inference_networks: tuple[str, ...] = ("model",)
    demo: str = ""
    cpu_bf16_training: bool = False

    # ---- before training -------------------------------------------------------------------------
    def check_dataset(self, dataset) -> None:
        """Raise DeepMedError when ``dataset`` cannot train this application (e.g. no labels declared)."""

    @abstractmethod
    def load_cases(self, cases: list) -> list:
        """Read the manifest's cases (images, targets) once."""

    @abstractmethod
    def fingerprint(self, loaded: list, dataset) -> dict:
        """What the plan is made from (spacings, sizes, channels, label shares, ...), from the loaded cases."""

    @abstractmethod
    def plan(self, fingerprint: dict, config: dict, device: str, reasons: dict) -> dict:
        """This application's plan entries (pure); add a one-line reason per decision to ``reasons``."""

    def training_defaults(self, plan: dict, fingerprint: dict, device: str) -> TrainingDefaults:
        """This application's batch size and learning rate for ``plan`` on ``device`` (used where the
        configuration says ``auto``; an explicit ``training.batch_size`` / ``optimizer.lr`` wins). Applications
        override it with what suits their task; this default is the generic AdamW set-up."""
        return TrainingDefaults(2, 1e-3, "2: the generic default (this application plans no batch size)",
                                "0.001: the generic AdamW default (this application plans no learning rate)")

    @abstractmethod
    def prepare_data(self, loaded_train: list, loaded_val: list, dataset, plan: dict, config: dict) -> PreparedData:
        """Turn the loaded cases into cached items (preprocessed, targets encoded) and fit statistics."""

    @abstractmethod
    def training_transform(self, plan: dict, config: dict):
        """The random part of the pipeline (sampling, augmentation): a callable on one item."""

    @abstractmethod
    def build_parts(self, plan: dict, config: dict, fitted: dict) -> Parts:
        """Networks, losses and optimisers (on the CPU; the trainer moves them)."""

    def network_choices(self) -> list[str]:
        """The registered networks a user may choose for this application's training (``network.name``;
        'auto' lets the plan choose). Default: none, the application builds its own."""
        return []

    def accepts_init(self, card: ModelCard) -> bool:
        """Fine-tuning (``training.init``): whether a model with this card can start this application's
        training (its network then comes from the card). Default: models of this application only."""
        return card.application == self.name

    def extra_inputs(self, plan) -> int:
        """Fine-tuning (``training.init``): input channels this application's network takes beyond the init
        model's (e.g. click guidance); the init model's first layers are widened with zero weights for them."""
        return 0

    def input_stems(self, plan) -> dict[str, set[str]]:
        """Fine-tuning with ``extra_inputs``: per network, the tensor names whose input-channel axis (1) grows."""
        return {}

    def output_heads(self, plan: dict) -> dict[str, set[str]]:
        """Fine-tuning on other targets (``training.init``): per network, the tensor names of its output head,
        which keep their fresh initialisation. Default: none known (other targets then fail to load)."""
        return {}

    # ---- training ----------------------------------------------------------------------------------
    @abstractmethod
    def train_step(self, parts: Parts, batch: dict, step: StepContext) -> dict[str, float]:
        """One optimisation step on ``batch``; returns its losses (must include ``loss``)."""

    @abstractmethod
    def validate_case(self, parts: Parts, item: dict, plan: dict, fitted: dict,
                      device: torch.device) -> dict[str, float]:
        """Metrics of one validation item; must include ``key_metric``."""

    def summarize_validation(self, per_case: list[dict]) -> dict[str, float]:
        """All validation cases' results -> the metrics of the epoch (default: the mean of each metric).
        Classification overrides it for metrics over cases (AUC, balanced accuracy)."""
        return {k: float(np.mean([m[k] for m in per_case])) for k in per_case[0]}

    def metric_names(self) -> tuple[str, ...]:
        """Prefixes of the validation metrics drawn in ``curves.png``."""
        return (self.key_metric,)

    # ---- the model card ------------------------------------------------------------------------------
    @abstractmethod
    def card_fields(self, plan: dict, fitted: dict, dataset, config: dict) -> dict:
        """What inference needs in ``model_card.json`` besides the common fields (inputs, labels, ...)."""


#: The trainable interface's name before the split (plug-ins written for it keep working).
Application = TrainableApplication


def get_application(name: str) -> RunnableApplication:
    """The application registered as ``name`` (either kind): what running a model asks for. When nobody
    registered it and a plug-in failed to load, the error says which and why (it may be the one)."""
    if name not in APPLICATIONS and NOT_LOADED:
        failures = "; ".join(f"{module}: {reason}" for module, reason in NOT_LOADED.items())
        raise DeepMedError(f"unknown application '{name}'; plug-ins that failed to load: {failures}")
    application = APPLICATIONS.get(name)()
    if not isinstance(application, RunnableApplication):
        raise DeepMedError(f"application '{name}': registered as a {type(application).__name__}, expected a "
                           "RunnableApplication or TrainableApplication subclass")
    return application


def get_trainable_application(name: str) -> TrainableApplication:
    """The application ``name`` for training or planning; a runnable-only one is refused in one line that
    says what the user can do instead."""
    application = get_application(name)
    if not isinstance(application, TrainableApplication):
        raise DeepMedError(f"application '{application.name}' runs imported models and is not trained by deepmed: "
                           f"{application.instead}")
    return application


def trainable_application_names() -> list[str]:
    """The registered applications deepmed trains (what ``app:`` of a training configuration may name)."""
    return [name for name in APPLICATIONS.names() if isinstance(APPLICATIONS.get(name)(), TrainableApplication)]
