"""Fine-tuning: a training that starts from another model's weights instead of a random initialisation.

    source = read_init_model(model_dir, fold=None)      # card + weights (safetensors) + their sha256
    plan = adopt_network(plan, source)                  # a plan that builds the source's network
    ... the application builds its parts from the plan ...
    report = transfer_weights(networks, source, heads, targets_differ)

Every tensor is copied except the output head when the targets differ (other labels, another number of
classes): the head keeps its fresh initialisation. Which tensors are the head is the application's answer
(:func:`output_dependent_keys` finds them for networks built from constructor arguments). Nothing here knows
a task; the source's application must be the training's own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from deepmed.errors import DeepMedError
from deepmed.model.card import ModelCard
from deepmed.model.directory import WEIGHTS, read_card
from deepmed.model.weights import MAIN, fold_weights, load_weights, split_networks
from deepmed.planning.plan import NetworkChoice, Plan

#: How many tensor names an error or a log line shows before "... and N more".
SHOWN_KEYS = 6


@dataclass
class InitSource:
    """The model a training starts from: its directory, card, chosen fold and inference weights."""

    path: Path
    card: ModelCard
    tensors: dict
    sha256: str
    fold: int | None = None

    @property
    def model_id(self) -> str:
        return str(self.card.id or self.path.name)

    def record(self) -> dict:
        """What the new model's card and plan say about where training started."""
        return {"model": self.model_id, "version": self.card.version, "path": str(self.path),
                "application": self.card.application, "fold": self.fold,
                "weights_sha256": self.sha256}


@dataclass
class TransferReport:
    loaded: int = 0
    reinitialized: list[str] = field(default_factory=list)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_init_model(path: str | Path, fold: int | None = None) -> InitSource:
    """The model in ``path`` (a finished model directory); for a cross-validation ensemble one fold's weights
    (``fold``, default the ensemble's first fold)."""
    path = Path(path).resolve()
    card = read_card(path)
    tensors = load_weights(path / WEIGHTS)
    folds = list(card.folds)
    if folds:
        chosen = folds[0] if fold is None else fold
        if chosen not in folds:
            raise DeepMedError(f"{path}: init fold {chosen} is not in this ensemble (folds {folds})")
        tensors = fold_weights(tensors, chosen)
        fold = chosen
    elif fold is not None:
        raise DeepMedError(f"{path}: training.init_fold={fold}, but this model is not a cross-validation ensemble")
    return InitSource(path, card, tensors, file_sha256(path / WEIGHTS), fold)


def _in_channels(network: dict) -> int | None:
    return network.get("args", {}).get("in_channels")


def adopt_network(plan: Plan, source: InitSource, lr_factor: float = 1.0, accepts=None, extra_inputs: int = 0
                  ) -> Plan:
    """``plan`` building the source's network (name and arguments) with the plan's own output channels, its
    learning-rate schedule starting at ``lr_factor`` of the configured rate (``schedule.lr_peak``): the full
    rate of a training from scratch throws much of a trained network away in its first steps. A new plan.

    The source must be a model the plan's application ``accepts`` (a callable on the source's card; default:
    a model of the same application) with the same number of input channels, or ``extra_inputs`` fewer (the
    application's guidance channels: :func:`transfer_weights` widens the first layers with zeros).
    """
    where = source.path
    accepted = accepts(source.card) if accepts is not None else source.card.application == plan.application
    if not accepted:
        raise DeepMedError(f"{where}: init model is a {source.card.application} model, this training is "
                           f"{plan.application}")
    network, ours = source.card.network, plan.network
    if network is None or ours is None:
        raise DeepMedError(f"{where}: init model's card names no network to start from")
    theirs = network.to_dict()
    expected, got = _in_channels(theirs), ours.args.get("in_channels")
    if expected != got and not (expected is not None and got is not None and expected + extra_inputs == got):
        raise DeepMedError(f"{where}: init model expects {expected} input channel(s), this dataset has "
                           f"{got if got is None or expected is None else got - extra_inputs}")
    args = dict(theirs.get("args", {}))
    if got is not None:
        args["in_channels"] = got
    if "out_channels" in ours.args:
        args["out_channels"] = ours.args["out_channels"]
    adopted = replace(plan, network=NetworkChoice(theirs["name"], args), init=source.record(),
                      schedule=replace(plan.schedule, lr_peak=float(lr_factor)))
    return adopted.with_reasons(
        network=(f"from the init model {source.model_id}: fine-tuning keeps its architecture "
                 f"({theirs['name']}); output channels for this dataset's targets"),
        lr_peak=f"fine-tuning: the schedule starts at {lr_factor:g} x optimizer.lr (training.init_lr_factor)",
        init=(f"fine-tuning from {source.model_id}" + (f" (fold {source.fold})" if source.fold is not None else "")
              + ": its weights, except an output head for other targets; normalisation statistics fitted on "
              "this dataset"))


def targets_differ(old_card: ModelCard, new_card: ModelCard | dict) -> bool:
    """True when the outputs mean something else: other label values or names, or another output kind."""
    if isinstance(new_card, dict):
        new_card = ModelCard.from_dict(new_card, "the new model's card")

    def labels(card: ModelCard):
        return [(label.value, label.name) for label in card.labels]

    def outputs(card: ModelCard):
        return None if card.network is None else card.network.args.get("out_channels")

    return (labels(old_card) != labels(new_card) or old_card.kind != new_card.kind
            or outputs(old_card) != outputs(new_card))


def transfer_weights(networks: dict[str, torch.nn.Module], source: InitSource, heads: dict[str, set[str]],
                     reinitialize_heads: bool, stems: dict[str, set[str]] | None = None) -> TransferReport:
    """Copy ``source``'s weights into ``networks`` (the application's parts, freshly initialised).

    ``heads``: per network, the tensor names of its output head, left as initialised when
    ``reinitialize_heads``. Networks the source does not hold (a GAN's discriminator) keep their
    initialisation. ``stems``: per network, the tensor names whose input-channel axis (1) may be wider than the
    source's (extra input channels): the source's weights fill the first channels, the others are zero, so the
    widened network computes what the source did while the extra inputs are unused. Any other difference (a
    missing, unexpected or differently shaped tensor) is an error.
    """
    report = TransferReport()
    per_network = split_networks(source.tensors, sorted(networks))
    for name, network in networks.items():
        theirs = per_network.get(name) or {}
        if not theirs:
            report.reinitialized.append(f"{name} (every tensor: the init model has no such network)")
            continue
        head = heads.get(name, set()) if reinitialize_heads else set()
        ours = network.state_dict()
        theirs = _widened(theirs, ours, (stems or {}).get(name, set()))
        missing = [k for k in ours if k not in theirs and k not in head]
        unexpected = [k for k in theirs if k not in ours]
        shapes = [f"{k} {tuple(theirs[k].shape)} vs {tuple(ours[k].shape)}" for k in ours
                  if k in theirs and k not in head and theirs[k].shape != ours[k].shape]
        if missing or unexpected or shapes:
            problems = [_briefly(what, keys) for what, keys in
                        (("missing", missing), ("unexpected", unexpected), ("shape", shapes)) if keys]
            raise DeepMedError(f"{source.path}: init weights do not fit network {name} ({'; '.join(problems)})")
        kept = {k: v for k, v in theirs.items() if k not in head}
        network.load_state_dict(kept, strict=False)
        report.loaded += len(kept)
        report.reinitialized.extend(k if list(networks) == [MAIN] else f"{name}.{k}" for k in ours if k in head)
    return report


def _widened(theirs: dict, ours: dict, stems: set[str]) -> dict:
    """``theirs`` with each stem tensor narrower on axis 1 than ours zero-padded to our shape."""
    widened = dict(theirs)
    for key in stems:
        if key not in theirs or key not in ours:
            continue
        old, new = theirs[key], ours[key]
        if old.dim() >= 2 and old.shape[0] == new.shape[0] and old.shape[2:] == new.shape[2:] \
                and old.shape[1] < new.shape[1]:
            padded = torch.zeros(new.shape, dtype=old.dtype)
            padded[:, :old.shape[1]] = old
            widened[key] = padded
    return widened


def _briefly(what: str, keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return f"{what}: {', '.join(keys[:SHOWN_KEYS])}{more}"


def output_dependent_keys(build: Callable[[dict], torch.nn.Module], args: dict,
                          argument: str = "out_channels") -> set[str]:
    """The tensor names whose shape follows ``args[argument]`` (the output head), found by building the
    network twice on the meta device (no memory, no weights) with that argument changed by one."""
    if argument not in args:
        return set()
    with torch.device("meta"):
        base = build(dict(args)).state_dict()
        probe = build({**args, argument: int(args[argument]) + 1}).state_dict()
    return {key for key, value in base.items() if key not in probe or probe[key].shape != value.shape}
