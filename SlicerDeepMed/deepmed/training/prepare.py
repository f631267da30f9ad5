"""One way from a configuration to a plan, for ``deepmed train``, ``deepmed plan`` and cross-validation:

    resolved config -> application -> dataset (checked) -> cases -> fingerprint -> plan (frozen)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deepmed.applications import TrainableApplication, get_trainable_application
from deepmed.data.manifest import Dataset
from deepmed.errors import DeepMedError
from deepmed.planning.plan import Plan
from deepmed.planning.planner import make_plan, resolved_config
from deepmed.planning.settings import TrainingSettings, application_name
from deepmed.training.config import load_config_file, parse_duration, resolve_config


@dataclass(frozen=True)
class PreparedRun:
    """Everything decided before training: the configuration (planned batch size and learning rate in place of
    ``auto``), the application, the cases (loaded) and the plan."""

    config: dict
    application: TrainableApplication
    dataset: Dataset
    train_cases: list
    val_cases: list
    loaded_train: list
    loaded_val: list
    fingerprint: dict
    plan: Plan
    budget_s: float | None


def user_config(config: Any) -> dict:
    """A configuration given as a YAML/JSON path, a dict or nothing -> the user's dict."""
    if config is None:
        return {}
    if isinstance(config, dict):
        return config
    return load_config_file(config)


def run_config(config: Any, overrides=(), values: dict | None = None) -> dict:
    """The resolved configuration: defaults <- ``config`` <- ``--set`` overrides <- typed ``values``."""
    return resolve_config(user_config(config), list(overrides), values)


def application_for(config: dict) -> TrainableApplication:
    """The application a configuration names: the one place a training run gets its application."""
    return get_trainable_application(application_name(config))


def split(dataset: Dataset, cfg: dict) -> tuple[list, list]:
    """Training and validation cases of the configured fold (a random share when the dataset has no splits)."""
    training = TrainingSettings.from_config(cfg)
    if training.fold is not None and not dataset.splits:
        raise DeepMedError(f"{dataset.source or dataset.name}: training.fold={training.fold} needs folds in the "
                           "manifest's 'splits'; make them once with 'deepmed dataset split DATASET --folds 5'")
    train, val, _ = dataset.split_cases(training.fold or 0)
    if not dataset.splits and training.val_fraction > 0 and len(train) >= 2:
        order = np.random.default_rng(training.seed).permutation(len(train))
        n_val = max(1, round(training.val_fraction * len(train)))
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    if not train:
        raise DeepMedError("no training cases (check the dataset's splits)")
    return train, val


def prepare_run(dataset, config: dict, device: str, *, all_cases: bool = False,
                load_validation: bool = True) -> PreparedRun:
    """Plan a training of ``dataset`` (a Dataset or a path) with the resolved ``config`` on ``device`` (its type:
    cpu, cuda, mps). ``all_cases``: fingerprint every training case (one plan for all folds), no time budget."""
    application = application_for(config)
    dataset = dataset if isinstance(dataset, Dataset) else Dataset.load(dataset)
    application.check_dataset(dataset)
    train_cases, val_cases = (list(dataset.training), []) if all_cases else split(dataset, config)
    loaded_train = application.load_cases(train_cases)
    loaded_val = application.load_cases(val_cases) if load_validation else []
    fingerprint = application.fingerprint(loaded_train, dataset)
    budget = None if all_cases else parse_duration(TrainingSettings.from_config(config).time_limit)
    plan = make_plan(application, fingerprint, config, device, budget)
    return PreparedRun(resolved_config(config, plan), application, dataset, train_cases, val_cases, loaded_train,
                       loaded_val, fingerprint, plan, budget)
