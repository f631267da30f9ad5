"""The training configuration: one validated schema (YAML/JSON), ``--set key=value`` overrides, and
defaults derived from the data where sensible. Every problem is reported at once.

The fully resolved configuration is saved with the model (``config.yaml``).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import yaml

from deepmed.applications import DEFAULT_APPLICATION
from deepmed.errors import DeepMedError
from deepmed.utils.auto import AUTO
from deepmed.utils.choices import choice_error, suggest
from deepmed.utils.yaml12 import load_yaml

DEFAULTS: dict[str, Any] = {
    "app": DEFAULT_APPLICATION,
    "network": {"name": "unet", "args": {}},
    "loss": {"name": AUTO, "args": {}},
    "optimizer": {"name": "adamw", "lr": AUTO, "weight_decay": 1e-5},  # lr: auto = the application's plan
    "scheduler": {"name": AUTO},  # auto: planned (a time budget: wsd; a number of epochs: cosine)
    "data": {
        "spacing": AUTO,            # [x, y, z] mm, or auto = median spacing of the training cases
        "patch_size": AUTO,         # [x, y, z] voxels, or auto = from the median shape and the memory budget
        "max_patch_voxels": 0,      # voxel budget of an auto patch; 0 = by device (CPU 48^3, GPU 128^3)
        "normalization": AUTO,      # auto | ct | zscore | zscore_foreground | minmax | none
        "sampling": AUTO,           # auto | uniform | foreground | class_balanced | weighted
        "foreground_ratio": 0.67,
        "samples_per_case": 2,
        "num_workers": 0,
    },
    "augmentation": {
        "flip": True, "rotate": True, "scale": True, "elastic": False, "noise": True, "gamma": True,
        "bias_field": False, "contrast": True, "probability": 0.2,
    },
    "training": {
        "epochs": 50, "batch_size": AUTO,  # auto = planned by the application (device, input size, cases)
        "iterations_per_epoch": 0,  # 0 = planned (a fixed number, whatever the number of cases)
        "val_every": 0,             # validate every N epochs; 0 = auto (at most 10% of the time, and at the end)
        "time_limit": 0,            # wall-time budget: seconds or "10m", "1h30m"; 0 = train for the epochs
        "val_fraction": 0.2, "early_stopping": 0, "seed": 0, "device": AUTO, "amp": AUTO,
        "fold": None,  # a fold of the manifest's splits (None: the first split if there are splits)
        "init": None,       # fine-tune: start from this model's weights (a model directory or library id)
        "init_fold": None,  # which fold of a cross-validation ensemble to start from (None: its first)
        "init_lr_factor": 0.2,  # fine-tuning starts its learning-rate schedule at this share of optimizer.lr
    },
    "task": {},  # the application's own settings (its config_defaults)
    "inference": {"overlap": 0.5, "sw_batch_size": 2, "tta_flips": False, "keep_largest": False, "precision": AUTO},
}

#: Keys that take "auto" or a list of three numbers.
AUTO_OR_TRIPLE = {"data.spacing", "data.patch_size"}
#: Keys that take "auto" (the application plans them) or a positive number of this type.
AUTO_OR_NUMBER = {"training.batch_size": int, "optimizer.lr": float}
#: Keys whose value is a free-form dict of constructor arguments (``task`` is checked by the application).
FREE_FORM = {"network.args", "loss.args", "task"}
CHOICES = {
    "data.normalization": ("auto", "ct", "zscore", "zscore_foreground", "minmax", "none"),
    "data.sampling": ("auto", "uniform", "foreground", "class_balanced", "weighted"),
    "training.device": ("auto", "cpu", "cuda", "mps"),
    "training.amp": ("auto", "on", "off"),
    "inference.precision": ("auto", "float32", "bfloat16"),
}


def _registry_choices() -> dict[str, list[str]]:
    from deepmed.applications import APPLICATIONS
    from deepmed.losses import LOSSES
    from deepmed.networks import NETWORKS
    from deepmed.optim import OPTIMIZERS, SCHEDULERS

    return {"app": APPLICATIONS.names(), "network.name": NETWORKS.names(), "loss.name": LOSSES.names() + [AUTO],
            "optimizer.name": OPTIMIZERS.names(), "scheduler.name": SCHEDULERS.names() + [AUTO]}


def parse_value(text: str) -> Any:
    """``--set`` values are YAML 1.2 scalars or lists: ``3``, ``1e-4``, ``true``, ``[96, 96, 64]``, ``unet``."""
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def apply_override(config: dict, assignment: str, problems: list[str]) -> None:
    if "=" not in assignment:
        problems.append(f"--set {assignment}: expected key=value, e.g. training.epochs=10")
        return
    key, value = assignment.split("=", 1)
    set_value(config, key, parse_value(value), problems)


def set_value(config: dict, key: str, value: Any, problems: list[str]) -> None:
    """Set the dotted ``key`` (``training.epochs``) of a user configuration to a typed value."""
    node = config
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            problems.append(f"--set {key}: '{part}' is not a section")
            return
    node[parts[-1]] = value


def _merge(defaults: dict, user: dict, prefix: str, problems: list[str]) -> dict:
    merged = copy.deepcopy(defaults)
    for key, value in user.items():
        path = f"{prefix}{key}"
        if key not in defaults:
            problems.append(f"config: unknown key '{path}'; {suggest(key, defaults)}"
                            f"known keys{' in ' + prefix[:-1] if prefix else ''}: {', '.join(defaults)}")
            continue
        default = defaults[key]
        if path in FREE_FORM:
            if not isinstance(value, dict):
                problems.append(f"config: '{path}' must be a mapping of constructor arguments, got {value!r}")
            else:
                merged[key] = value
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                problems.append(f"config: '{path}' must be a section (mapping), got {value!r}")
            else:
                merged[key] = _merge(default, value, path + ".", problems)
        elif path == "training.time_limit":
            merged[key] = value  # a number of seconds or "10m": checked by parse_duration
        elif path in AUTO_OR_TRIPLE:
            ok = value == AUTO or (isinstance(value, list) and len(value) == 3
                                   and all(isinstance(v, (int, float)) and v > 0 for v in value))
            if not ok:
                problems.append(f"config: '{path}' must be 'auto' or three positive numbers [x, y, z], got {value!r}")
            merged[key] = value
        elif path in AUTO_OR_NUMBER:
            merged[key] = _auto_or_number(path, AUTO_OR_NUMBER[path], value, problems)
        else:
            merged[key] = _check_type(path, default, value, problems)
    return merged


def _auto_or_number(path: str, kind: type, value: Any, problems: list[str]) -> Any:
    """'auto' (any case) or a positive int / number; floats are returned as floats."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    expected = "an integer" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int,) if kind is int else (int, float)):
        problems.append(f"config: '{path}' must be auto or {expected}, got {value!r}")
        return value
    return float(value) if kind is float else value


def _check_type(path: str, default: Any, value: Any, problems: list[str]) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            problems.append(f"config: '{path}' must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"config: '{path}' must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"config: '{path}' must be a number, got {value!r}")
            return value
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        problems.append(f"config: '{path}' must be a string, got {value!r}")
    return value


def _check_choices(config: dict, problems: list[str]) -> None:
    choices = {**CHOICES, **_registry_choices()}
    for path, allowed in choices.items():
        node: Any = config
        for part in path.split("."):
            node = node[part]
        if isinstance(node, str) and node.lower() not in [a.lower() for a in allowed]:
            problems.append(f"config: {choice_error(path, node, allowed)}")
    _check_loss_fits_app(config, problems)
    for path in ("training.epochs", "training.batch_size", "data.samples_per_case"):
        section, key = path.split(".")
        value = config[section][key]
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            problems.append(f"config: '{path}' must be at least 1, got {value}")
    for path in ("training.val_every", "training.iterations_per_epoch", "data.max_patch_voxels"):
        section, key = path.split(".")
        value = config[section][key]
        if isinstance(value, int) and value < 0:
            problems.append(f"config: '{path}' must be 0 (auto) or positive, got {value}")
    fold = config["training"]["fold"]
    if fold is not None and (isinstance(fold, bool) or not isinstance(fold, int) or fold < 0):
        problems.append(f"config: 'training.fold' must be a fold number (0, 1, ...), got {fold!r}")
    init, init_fold = config["training"]["init"], config["training"]["init_fold"]
    if init is not None and (not isinstance(init, str) or not init.strip()):
        problems.append(f"config: 'training.init' must be a model directory or library id, got {init!r}")
    if init_fold is not None and (isinstance(init_fold, bool) or not isinstance(init_fold, int) or init_fold < 0):
        problems.append(f"config: 'training.init_fold' must be a fold number (0, 1, ...), got {init_fold!r}")
    factor = config["training"]["init_lr_factor"]
    if isinstance(factor, (int, float)) and not 0 < factor <= 1:
        problems.append(f"config: 'training.init_lr_factor' must be in (0, 1], got {factor}")
    try:
        parse_duration(config["training"]["time_limit"])
    except DeepMedError as exc:
        problems.append(f"config: 'training.time_limit': {exc}")
    lr = config["optimizer"]["lr"]
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr <= 0:
        problems.append(f"config: 'optimizer.lr' must be positive, got {lr}")
    overlap = config["inference"]["overlap"]
    if isinstance(overlap, (int, float)) and not 0 <= overlap < 1:
        problems.append(f"config: 'inference.overlap' must be in [0, 1), got {overlap}")


def _check_task(config: dict, problems: list[str]) -> None:
    """The ``task`` section against the application's own defaults (its part of the schema)."""
    from deepmed.applications import APPLICATIONS, get_trainable_application

    if not isinstance(config["app"], str) or config["app"] not in APPLICATIONS:
        return
    try:
        defaults = get_trainable_application(config["app"]).config_defaults
    except DeepMedError as exc:  # an application that only runs (imported models)
        problems.append(f"config: 'app': {exc}")
        return
    config["task"] = _merge(defaults, config.get("task") or {}, "task.", problems)


UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(value) -> float | None:
    """``600``, ``"600"``, ``"10m"``, ``"1h30m"``, ``"90s"`` -> seconds; 0 / None / "" -> None (no limit)."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, bool):
        raise DeepMedError(f"expected a duration like 600, '10m' or '1h30m', got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise DeepMedError(f"a duration must be positive, got {value}")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    try:
        return float(text) or None
    except ValueError:
        pass
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(min|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise DeepMedError(f"expected a duration like 600, '10m' or '1h30m', got {value!r}")
    return sum(float(n) * UNITS[u] for n, u in parts)


def _check_loss_fits_app(config: dict, problems: list[str]) -> None:
    """A loss named for another application (``dice`` for regression) is a config error."""
    from deepmed.applications import APPLICATIONS
    from deepmed.losses import LOSSES, losses_for

    app, loss = config["app"], config["loss"]["name"]
    if not (isinstance(app, str) and isinstance(loss, str)) or loss.lower() == AUTO:
        return
    if app not in APPLICATIONS or loss not in LOSSES:
        return  # already reported as an unknown choice
    app, loss = APPLICATIONS.canonical(app), LOSSES.canonical(loss)
    fitting = losses_for(app)
    if loss not in fitting:
        problems.append(f"config: loss.name: '{loss}' does not fit application '{app}'; "
                        f"choose one of: {', '.join(fitting)}")


def load_config_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DeepMedError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else load_yaml(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise DeepMedError(f"{path}: cannot parse config: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DeepMedError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def resolve_config(user: dict | None = None, overrides: list[str] | None = None,
                   values: dict[str, Any] | None = None) -> dict:
    """Defaults <- user config <- ``--set`` overrides <- ``values`` (typed settings by dotted key, e.g.
    ``{"training.epochs": 3}``: what options like ``--epochs`` set, never turned into text), validated;
    every problem listed in one DeepMedError."""
    problems: list[str] = []
    user = copy.deepcopy(user or {})
    for assignment in overrides or []:
        apply_override(user, assignment, problems)
    for key, value in (values or {}).items():
        set_value(user, key, value, problems)
    config = _merge(DEFAULTS, user, "", problems)
    _check_choices(config, problems)
    _check_task(config, problems)
    if problems:
        raise DeepMedError("\n".join(problems))
    return config


def dump_config(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)
