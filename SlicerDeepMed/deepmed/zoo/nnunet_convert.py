"""nnU-Net result folders -> one deepmed model: a configuration (2D or 3D), a cascade (``3d_cascade_fullres``
with its ``3d_lowres`` sibling folder, found by nnU-Net's naming ``TRAINER__PLANS__CONFIGURATION``), or an
ensemble of configurations (the ``ensembles/ensemble___A___B___FOLDS`` folder ``nnUNetv2_find_best_configuration``
writes, its members the sibling result folders A and B), with nnU-Net's determined post-processing
(``postprocessing.json`` of the ensemble folder, or ``crossval_results_folds_<folds>/`` of a result folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.model.directory import CARD, WEIGHTS
from deepmed.zoo.checksums import write_sums


@dataclass
class TrainedConfiguration:
    """One result folder read: its settings, network arguments, per-fold weights (each tensor once)."""

    folder: Path
    settings: dict
    args: dict
    weights: dict[int, dict]
    previous: TrainedConfiguration | None = None
    dataset: dict = field(default_factory=dict)
    plans: dict = field(default_factory=dict)


def _sibling(folder: Path, configuration: str, where: str) -> Path:
    """The result folder of ``configuration`` trained with the same trainer and plans (nnU-Net's naming)."""
    parts = folder.resolve().name.split("__")
    if len(parts) != 3:
        raise DeepMedError(f"{where}: cannot find the {configuration} stage: the folder name {folder.name!r} is not "
                           "nnU-Net's TRAINER__PLANS__CONFIGURATION")
    sibling = folder.resolve().parent / f"{parts[0]}__{parts[1]}__{configuration}"
    if not sibling.is_dir():
        raise DeepMedError(f"{where}: configuration {parts[2]!r} is a cascade stage and needs its previous stage "
                           f"{configuration!r}: expected the result folder {sibling}")
    return sibling


def read_trained(folder: Path, checkpoint: str, where: str, folds: list[int] | None = None) -> TrainedConfiguration:
    from deepmed.nnunet.checkpoint import configuration_name, load_checkpoint
    from deepmed.nnunet.network import build_network, network_args, stored_weights
    from deepmed.zoo.nnunet_import import (
        _read_json,
        choose_checkpoint,
        configuration,
        configuration_settings,
        fold_folders,
        label_entries,
    )

    dataset = _read_json(folder / "dataset.json", where)
    plans = _read_json(folder / "plans.json", where)
    available = fold_folders(folder)
    if folds is not None:
        missing = [k for k in folds if k not in available]
        if missing:
            raise DeepMedError(f"{where}: {folder.name} has no fold_{missing[0]} (needed: folds "
                               f"{', '.join(map(str, folds))})")
        available = {k: available[k] for k in folds}
    if not available:
        raise DeepMedError(f"{where}: no fold_N folders with checkpoints (fold_all alone is not supported)")
    checkpoint_name = choose_checkpoint(available, checkpoint, where)
    loaded = {k: load_checkpoint(available[k] / checkpoint_name) for k in sorted(available)}
    names = {k: configuration_name(c, available[k] / checkpoint_name) for k, c in loaded.items()}
    if len(set(names.values())) != 1:
        raise DeepMedError(f"{where}: folds trained different configurations ({names})")
    config_name = next(iter(names.values()))
    config = configuration(plans, config_name, where)
    first = loaded[min(loaded)]
    settings = configuration_settings(dataset, plans, config, first, config_name=config_name,
                                      checkpoint_name=checkpoint_name, where=where)
    _, _, outputs = label_entries(dataset, where)
    channels = len(settings["normalization_schemes"])
    if config.get("previous_stage"):
        channels += len(settings["foreground_labels"])
    args = network_args(config["architecture"], channels, outputs)
    network = build_network(args)
    weights = {}
    for fold, content in loaded.items():
        try:
            network.load_state_dict(content["network_weights"], strict=True)
        except RuntimeError as exc:
            raise DeepMedError(f"{where}: {folder.name}/fold_{fold}/{checkpoint_name} does not fit the network in "
                               f"plans.json ({str(exc).splitlines()[0][:160]})") from None
        weights[fold] = stored_weights(network)
    previous = None
    if config.get("previous_stage"):
        previous = read_trained(_sibling(folder, config["previous_stage"], where), checkpoint, where, sorted(loaded))
    return TrainedConfiguration(folder, settings, args, weights, previous, dataset, plans)


def _postprocessing(path: Path) -> list[dict]:
    from deepmed.nnunet.postprocessing import read_postprocessing

    return read_postprocessing(path) if path.is_file() else []


def _stage_settings(trained: TrainedConfiguration, with_network: bool) -> dict:
    settings = dict(trained.settings)
    if with_network:
        settings["network"] = trained.args
    if trained.previous is not None:
        settings["previous_stage"] = _stage_settings(trained.previous, True)
    return settings


def _weights(trained: TrainedConfiguration, name: str, fold: int) -> dict:
    from deepmed.nnunet.prediction import MAIN, PREVIOUS

    tensors = {f"{name}.{k}": v for k, v in trained.weights[fold].items()}
    if trained.previous is not None:
        tensors.update(_weights(trained.previous, f"{name}_{PREVIOUS}" if name != MAIN else PREVIOUS, fold))
    return tensors


def convert(folder: Path, target: Path, where: str, checkpoint: str = "auto") -> dict:
    """Write ``target`` as a deepmed model made from the nnU-Net result or ensemble folder; returns its card."""
    from safetensors.torch import save_file

    from deepmed.model.weights import ensemble_weights
    from deepmed.nnunet.prediction import MAIN
    from deepmed.zoo.nnunet_import import card_from_settings, is_ensemble_folder
    from deepmed.zoo.schemas import CARD_SCHEMA, check_document

    folder = Path(folder)
    if is_ensemble_folder(folder):
        _, *members, folds_text = folder.name.split("___")
        try:
            folds = [int(f) for f in folds_text.split("_")]
        except ValueError:
            raise DeepMedError(f"{where}: ensemble folder name ends in {folds_text!r}; expected folds like "
                               "'0_1'") from None
        results = folder.resolve().parent.parent
        trained = []
        for member in members:
            if not (results / member).is_dir():
                raise DeepMedError(f"{where}: ensemble member {member}: expected the result folder {results / member}")
            trained.append(read_trained(results / member, checkpoint, where, folds))
        names = [t.settings["configuration"] for t in trained]
        settings = {"ensemble": [_stage_settings(t, True) for t in trained]}
        names_by_member = {f"member{i}": t for i, t in enumerate(trained)}
        title = " + ".join(names)
        postprocessing = folder / "postprocessing.json"
    else:
        trained = [read_trained(folder, checkpoint, where)]
        folds = sorted(trained[0].weights)
        settings = _stage_settings(trained[0], False)
        names_by_member = {MAIN: trained[0]}
        title = settings["configuration"]
        postprocessing = folder / f"crossval_results_folds_{'_'.join(map(str, folds))}" / "postprocessing.json"
    settings["postprocessing"] = _postprocessing(postprocessing)
    first = trained[0]
    card = card_from_settings(first.dataset, first.plans, settings, first.args, title=title, folds=folds, where=where)
    check_document(card, CARD_SCHEMA, f"{where}: converted card")
    per_fold = {}
    for fold in folds:
        tensors = {}
        for name, member in names_by_member.items():
            tensors.update(_weights(member, name, fold))
        if list(names_by_member) == [MAIN] and first.previous is None:
            tensors = {k[len(MAIN) + 1:]: v for k, v in tensors.items()}
        per_fold[fold] = tensors
    target.mkdir(parents=True)
    save_file(ensemble_weights(per_fold), str(target / WEIGHTS))
    (target / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    steps = len(settings["postprocessing"])
    (target / "README.md").write_text(
        f"# {card['title']}\n\nImported from the nnU-Net v2 {'ensemble' if len(trained) > 1 else 'result'} folder "
        f"{folder.name} ({title}, {first.settings['trainer_name']}, {first.settings['checkpoint']}, folds "
        f"{', '.join(map(str, folds))}; post-processing: "
        f"{f'{steps} step(s) from {postprocessing.parent.name}/postprocessing.json' if steps else 'none'}).\n",
        encoding="utf-8")
    write_sums(target)
    return card
