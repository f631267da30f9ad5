"""Import an nnU-Net v2 result folder (``dataset.json``, ``plans.json``, ``fold_N/checkpoint_final.pth`` or
``checkpoint_best.pth``) as a deepmed model: ``model_card.json`` with the plans' preprocessing in its ``task``
section, and every fold's weights in one ``model.safetensors`` (the engine's ensemble format).

Checkpoints are read with ``torch.load(weights_only=True)`` and an explicit allow-list (``deepmed.nnunet.checkpoint``);
the network is rebuilt from the plans and must take every fold's weights exactly.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from deepmed.applications.nnunet import NAME as APPLICATION
from deepmed.errors import DeepMedError
from deepmed.model.directory import CARD_FORMAT, label_colour
from deepmed.utils.json_files import read_json_object

#: The card's network name: the class and arguments come from nnU-Net's plans (``network.args``).
NETWORK = "dynamic_network_architectures"

CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
READERS = ("SimpleITKIO", "NibabelIO")  # both give SimpleITK's array order without reorienting
RESAMPLING = ("resample_data_or_seg_to_shape", "resample_data_or_seg_to_spacing")
NORMALIZATION = {"CTNormalization": "ct", "ZScoreNormalization": "zscore", "NoNormalization": "none",
                 "RescaleTo01Normalization": "minmax", "RGBTo01Normalization": "scale_range"}


ENSEMBLE_PREFIX = "ensemble___"


def fold_folders(folder: Path) -> dict[int, Path]:
    return {int(p.name[5:]): p for p in folder.glob("fold_*") if p.is_dir() and re.fullmatch(r"fold_\d+", p.name)}


def is_ensemble_folder(folder: Path) -> bool:
    """An nnU-Net ensemble folder (``ensemble___CONF1___CONF2___FOLDS``, by nnunetv2's naming)."""
    return folder.name.startswith(ENSEMBLE_PREFIX) and len(folder.name.split("___")) >= 4


def is_nnunet_folder(folder: Path) -> bool:
    """A folder that looks like an nnU-Net training output (plans.json, or fold_N folders with checkpoints)."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / "plans.json").is_file() or is_ensemble_folder(folder) or
                                any(f.glob("checkpoint_*.pth") for f in fold_folders(folder).values()))


def _read_json(path: Path, where: str) -> dict:
    if not path.is_file():
        raise DeepMedError(f"{where}: nnU-Net result folder without {path.name}")
    return read_json_object(path, f"the nnU-Net result's {path.name}")


def choose_checkpoint(folds: dict[int, Path], which: str, where: str) -> str:
    """``final`` / ``best`` / ``auto`` (final when every fold has it, else best) -> the file name."""
    if which not in ("auto", *CHECKPOINTS):
        raise DeepMedError(f"--checkpoint {which}: expected auto, final or best")
    for name in ([CHECKPOINTS[which]] if which != "auto" else list(CHECKPOINTS.values())):
        if all((f / name).is_file() for f in folds.values()):
            return name
    missing = sorted(f"fold_{k}" for k, f in folds.items() if not (f / CHECKPOINTS.get(which, "checkpoint_final.pth"))
                     .is_file())
    wanted = CHECKPOINTS[which] if which != "auto" else "checkpoint_final.pth or checkpoint_best.pth in every fold"
    raise DeepMedError(f"{where}: no {wanted} (missing in {', '.join(missing)})")


def configuration(plans: dict, name: str, where: str) -> dict:
    """A plans configuration with its ``inherits_from`` chain resolved (as nnU-Net's PlansManager does)."""
    configurations = plans.get("configurations", {})
    if name not in configurations:
        raise DeepMedError(f"{where}: plans.json has no configuration {name!r} (has {', '.join(configurations)})")
    config = copy.deepcopy(configurations[name])
    if "inherits_from" in config:
        parent = configuration(plans, config.pop("inherits_from"), where)
        parent.update(config)
        config = parent
    return config


def _refuse_unsupported(plans: dict, config: dict, name: str, where: str) -> None:
    reader = plans.get("image_reader_writer", "SimpleITKIO")
    if reader not in READERS:
        raise DeepMedError(f"{where}: image reader {reader!r} not supported ({', '.join(READERS)})")
    if plans.get("label_manager", "LabelManager") != "LabelManager":
        raise DeepMedError(f"{where}: label manager {plans['label_manager']!r} not supported (LabelManager)")
    if len(config.get("patch_size", [])) not in (2, 3):
        raise DeepMedError(f"{where}: configuration {name!r}: patch_size {config.get('patch_size')!r}; expected 2 "
                           "or 3 values")
    if config.get("preprocessor_name", "DefaultPreprocessor") != "DefaultPreprocessor":
        raise DeepMedError(f"{where}: preprocessor {config['preprocessor_name']!r} not supported (DefaultPreprocessor)")
    if "architecture" not in config:
        raise DeepMedError(f"{where}: plans.json in the old format (no 'architecture'); re-plan with nnU-Net >= 2.3")
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        if config.get(key) not in RESAMPLING:
            raise DeepMedError(f"{where}: {key} {config.get(key)!r} not supported ({', '.join(RESAMPLING)})")
        if config.get(f"{key}_kwargs", {}).get("is_seg"):
            raise DeepMedError(f"{where}: {key}_kwargs.is_seg is true; expected false")
    if config.get("previous_stage"):
        if config.get("resampling_fn_seg") not in RESAMPLING:
            raise DeepMedError(f"{where}: resampling_fn_seg {config.get('resampling_fn_seg')!r} not supported "
                               f"({', '.join(RESAMPLING)})")
        if not config.get("resampling_fn_seg_kwargs", {}).get("is_seg", True):
            raise DeepMedError(f"{where}: resampling_fn_seg_kwargs.is_seg is false; expected true")
    for scheme in config["normalization_schemes"]:
        if scheme not in NORMALIZATION:
            raise DeepMedError(f"{where}: normalisation scheme {scheme!r} not supported ({', '.join(NORMALIZATION)})")


def label_entries(dataset: dict, where: str) -> tuple[list[dict], list[int] | None, int]:
    """Card labels, the regions' painting order (None for plain labels) and the number of network outputs."""
    labels = {k: v for k, v in dataset.get("labels", {}).items() if k != "ignore"}
    if labels.get("background") != 0:
        raise DeepMedError(f"{where}: dataset.json labels must declare background = 0")
    regions = any(isinstance(v, list) and len(v) > 1 for v in labels.values())
    if not regions:
        values = sorted({int(v[0] if isinstance(v, list) else v) for v in labels.values()})
        if values != list(range(len(values))):
            raise DeepMedError(f"{where}: dataset.json labels must be 0..N-1 (nnU-Net's rule), got {values}")
        names = {int(v[0] if isinstance(v, list) else v): k for k, v in labels.items()}
        return [{"value": v, "name": names[v], "color": label_colour(v)} for v in values], None, len(values)
    order = dataset.get("regions_class_order")
    foreground = [k for k, v in labels.items() if not (v == 0 or (isinstance(v, list) and set(v) == {0}))]
    if not isinstance(order, list) or len(order) != len(foreground):
        raise DeepMedError(f"{where}: region-based dataset.json needs regions_class_order with one value per region "
                           f"({len(foreground)})")
    entries = [{"value": 0, "name": "background", "color": label_colour(0)}]
    entries += [{"value": int(v), "name": name, "color": label_colour(int(v))} for name, v in zip(foreground, order)]
    return entries, [int(v) for v in order], len(foreground)


def _xyz(values: list, backward: list[int]) -> list:
    """Per-axis values of the transposed nnU-Net array -> the image's x, y, z order."""
    return [values[backward[axis]] for axis in range(3)][::-1]


def foreground_labels(dataset: dict) -> list[int]:
    """nnU-Net's ``LabelManager.foreground_labels``: every label value but background (0), ascending."""
    values = set()
    for name, value in dataset.get("labels", {}).items():
        if name != "ignore":
            values.update(int(v) for v in (value if isinstance(value, list) else [value]))
    return sorted(values - {0})


def configuration_settings(dataset: dict, plans: dict, config: dict, checkpoint: dict, *, config_name: str,
                           checkpoint_name: str, where: str) -> dict:
    """What inference needs of one configuration (the card's ``task`` for a single configuration)."""
    from deepmed.nnunet.checkpoint import mirror_axes

    _refuse_unsupported(plans, config, config_name, where)
    labels, regions_order, _ = label_entries(dataset, where)
    properties = plans.get("foreground_intensity_properties_per_channel", {})
    settings = {
        "configuration": config_name, "trainer_name": str(checkpoint["trainer_name"]), "checkpoint": checkpoint_name,
        "transpose_forward": [int(a) for a in plans["transpose_forward"]],
        "transpose_backward": [int(a) for a in plans["transpose_backward"]],
        "spacing": [float(s) for s in config["spacing"]], "patch_size": [int(p) for p in config["patch_size"]],
        "normalization_schemes": list(config["normalization_schemes"]),
        "use_mask_for_norm": [bool(u) for u in config["use_mask_for_norm"]],
        "intensity_properties": {k: {n: float(x) for n, x in v.items()} for k, v in properties.items()},
        "resampling_data": _resampling(config["resampling_fn_data_kwargs"]),
        "resampling_probabilities": _resampling(config["resampling_fn_probabilities_kwargs"]),
        "label_values": [entry["value"] for entry in labels], "regions_class_order": regions_order,
        "mirror_axes": mirror_axes(checkpoint), "tile_step_size": 0.5,
        "image_reader_writer": plans.get("image_reader_writer", "SimpleITKIO"),
    }
    if config.get("previous_stage"):
        settings["resampling_segmentation"] = _resampling(config.get("resampling_fn_seg_kwargs", {"order": 1}))
        settings["foreground_labels"] = foreground_labels(dataset)
    return settings


def card_from_settings(dataset: dict, plans: dict, settings: dict, network_args: dict, *, title: str,
                       folds: list[int], where: str) -> dict:
    """The model card around ``settings`` (one configuration's, or ``{"ensemble": [...]}``)."""
    labels, _, _ = label_entries(dataset, where)
    channel_names = dataset.get("channel_names") or dataset.get("modality") or {}
    names = [str(channel_names[k]) for k in sorted(channel_names, key=int)]
    first = settings["ensemble"][0] if "ensemble" in settings else settings
    if len(names) != len(first["normalization_schemes"]):
        raise DeepMedError(f"{where}: {len(names)} channel(s) in dataset.json, {len(first['normalization_schemes'])} "
                           "normalisation scheme(s) in the plans")
    properties = plans.get("foreground_intensity_properties_per_channel", {})
    inputs = []
    for index, (name, scheme) in enumerate(zip(names, first["normalization_schemes"])):
        method = NORMALIZATION[scheme]
        if method == "zscore" and first["use_mask_for_norm"][index]:
            method = "zscore_foreground"
        statistics = None
        if scheme == "CTNormalization":
            statistics = {k: float(properties[str(index)][k]) for k in ("mean", "std", "percentile_00_5",
                                                                         "percentile_99_5")}
        inputs.append({"name": name, "modality": name, "normalization": method, "statistics": statistics,
                       "assumptions": f"nnU-Net {scheme}"})
    backward = first["transpose_backward"]
    spacing, patch = first["spacing"], first["patch_size"]
    if len(patch) == 2:  # a 2D configuration: slices of the input's own spacing, one at a time
        median = plans.get("original_median_spacing_after_transp") or [1.0, 1.0, 1.0]
        spacing, patch = [float(median[0]), *spacing], [1, *patch]
    model_id = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{plans.get('dataset_name', 'nnU-Net')}_{title}").strip("-._")
    licence = dataset.get("licence") or dataset.get("license") or "not stated in the nnU-Net result folder"
    configuration = title if "ensemble" in settings else first["configuration"]
    return {
        "format": CARD_FORMAT, "application": APPLICATION, "output_kind": "label_map",
        "id": model_id[:100] or "nnU-Net-model",
        "version": "1.0.0", "title": f"{plans.get('dataset_name', 'nnU-Net model')} (nnU-Net {title})"[:200],
        "description": str(dataset.get("description", ""))[:5000],
        "licence": str(licence)[:200], "inputs": inputs, "labels": labels,
        "spacing": _xyz(spacing, backward), "patch_size": _xyz(patch, backward),
        "array_axes": "zyx",
        "network": {"name": NETWORK, "args": network_args},
        "inference": {"tta_flips": bool(first["mirror_axes"]), "overlap": 0.5},
        "task": settings, "folds": folds,
        "source": {"format": "nnunet-v2", "dataset_name": plans.get("dataset_name", ""),
                   "plans_name": plans.get("plans_name", ""), "configuration": configuration,
                   "trainer": first["trainer_name"], "checkpoint": first["checkpoint"]},
    }


def _resampling(kwargs: dict) -> dict:
    force = kwargs.get("force_separate_z")
    return {"order": int(kwargs.get("order", 3)), "order_z": int(kwargs.get("order_z", 0)),
            "force_separate_z": None if force is None else bool(force)}
