"""The application driver: dataset -> preprocessing -> network, loss, optimiser -> Trainer -> model directory."""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path

import numpy as np
import torch
import yaml

from deepmed import __version__
from deepmed.applications import get_application
from deepmed.data.manifest import Dataset
from deepmed.errors import DeepMedError, DeepMedInterrupted
from deepmed.losses import build_loss
from deepmed.networks import build_network, network_arguments
from deepmed.training import data_prep
from deepmed.training.checkpoint import find_checkpoint, load_checkpoint
from deepmed.training.config import AUTO, dump_config, load_config_file, resolve_config
from deepmed.training.distributed import init_distributed
from deepmed.training.model_dir import (CARD_FORMAT, CONFIG, label_colour, write_card, write_curves,
                                        write_metrics_csv)
from deepmed.training.optim import OPTIMIZERS, SCHEDULERS
from deepmed.training.progress import make_reporter
from deepmed.training.trainer import Trainer
from deepmed.transforms.augmentation import training_transforms
from deepmed.utils.atomic import write_text_atomic


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeepMedError("device cuda requested, but no CUDA GPU is available (use --device cpu or auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeepMedError("device mps requested, but Apple MPS is not available")
    return torch.device(name)


def _load_user_config(config) -> dict:
    if config is None:
        return {}
    if isinstance(config, dict):
        return config
    return load_config_file(config)


def _split(dataset: Dataset, cfg: dict) -> tuple[list, list]:
    train, val, _ = dataset.split_cases(cfg["training"]["fold"])
    if not dataset.splits and cfg["training"]["val_fraction"] > 0 and len(train) >= 2:
        order = np.random.default_rng(cfg["training"]["seed"]).permutation(len(train))
        n_val = max(1, int(round(cfg["training"]["val_fraction"] * len(train))))
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    if not train:
        raise DeepMedError("no training cases (check the dataset's splits)")
    return train, val


def _check_out_dir(out: Path, resume: bool) -> None:
    if not out.parent.is_dir():
        raise DeepMedError(f"{out}: output folder {out.parent} does not exist")
    has_model = (out / "model_card.json").exists() or (out / "checkpoints").exists()
    if resume and find_checkpoint(out / "checkpoints" / "last") is None:
        raise DeepMedError(f"{out}: no checkpoint to resume from (checkpoints/last missing)")
    if not resume and has_model:
        raise DeepMedError(f"{out}: already holds a model; pass --resume to continue it or choose another --out")


def train(dataset, out, *, app: str | None = None, config=None, overrides: list[str] | None = None,
          epochs: int | None = None, device: str | None = None, resume: bool = False, progress="tqdm") -> Path:
    """Train a model and write its model directory; returns the directory.

    Args:
        dataset: a Dataset or a path (manifest, CSV, nnU-Net folder).
        out: model directory to create (or to continue with ``resume=True``).
        app: ``segmentation`` or ``regression`` (default from the config, else segmentation).
        config: YAML/JSON path or dict; ``overrides``: ``["training.epochs=10", ...]``.
        epochs, device: shortcuts for ``training.epochs`` / ``training.device``.
        resume: continue from ``out/checkpoints/last`` with the saved configuration.
        progress: ``tqdm``, ``jsonl``, ``none``, or a callable receiving each event as a dict.
    """
    out = Path(out)
    reporter = make_reporter(progress)
    try:
        return _prepare_and_run(dataset, out, app, config, overrides, epochs, device, resume, reporter)
    except DeepMedInterrupted:
        raise  # the trainer already reported "stopped"
    except DeepMedError as exc:
        reporter.emit("error", message=str(exc))
        raise
    except Exception as exc:
        reporter.emit("error", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        reporter.close()


def _prepare_and_run(dataset, out, app, config, overrides, epochs, device, resume, reporter) -> Path:
    _check_out_dir(out, resume)
    overrides = list(overrides or [])
    if resume:
        user = yaml.safe_load((out / CONFIG).read_text()) if (out / CONFIG).is_file() else {}
        saved_app = user.get("app")
        if app is not None and saved_app is not None and app != saved_app:
            raise DeepMedError(f"{out}: holds a {saved_app} model, cannot resume it as {app}")
    else:
        user = _load_user_config(config)
    if app is not None:
        overrides.append(f"app={app}")
    if epochs is not None:
        overrides.append(f"training.epochs={epochs}")
    if device is not None:
        overrides.append(f"training.device={device}")
    cfg = resolve_config(user, overrides)
    application = get_application(cfg["app"])
    dataset = dataset if isinstance(dataset, Dataset) else Dataset.load(dataset)
    if application.target_is_label and not dataset.labels:
        raise DeepMedError(f"{dataset.source or dataset.name}: segmentation needs 'labels' in the manifest "
                           "(for image targets use --app regression)")
    dist = init_distributed(cfg["training"]["device"] if cfg["training"]["device"] != AUTO else
                            ("cuda" if torch.cuda.is_available() else "cpu"))
    dev = pick_device(cfg["training"]["device"])
    if dist is not None and dev.type == "cuda":
        dev = torch.device("cuda", dist.local_rank)
    out.mkdir(exist_ok=True)
    return _run(dataset, out, cfg, application, dev, reporter, resume, dist)


def _run(dataset, out, cfg, application, dev, reporter, resume, dist) -> Path:
    train_cases, val_cases = _split(dataset, cfg)
    channel_names = [dataset.channel_names.get(str(i), f"channel_{i}") for i in
                     range(max(len(dataset.channel_names), 1))]
    loaded_train = data_prep.read_cases(train_cases)
    loaded_val = data_prep.read_cases(val_cases)
    if len(loaded_train[0][1]) != len(channel_names):
        channel_names = [f"channel_{i}" for i in range(len(loaded_train[0][1]))]
    data = cfg["data"]
    if data["spacing"] == AUTO:
        data["spacing"] = data_prep.median_spacing([channels for _, channels, _ in loaded_train])
    data["spacing"] = [float(s) for s in data["spacing"]]
    train = data_prep.prepare_cases(loaded_train, application, data["spacing"])
    val = data_prep.prepare_cases(loaded_val, application, data["spacing"])
    if data["patch_size"] == AUTO:
        data["patch_size"] = list(reversed(data_prep.auto_patch_size([c["image"].shape[1:] for c in train],
                                                                     data["max_patch_voxels"])))
    patch_zyx = list(reversed([int(p) for p in data["patch_size"]]))
    methods = data_prep.normalization_methods(data["normalization"], channel_names)
    norm_stats = data_prep.fit_normalization(train, methods, application.target_is_label)
    target_stats = application.target_statistics([c["label"] for c in train])
    sampling = application.default_sampling if data["sampling"] == AUTO else data["sampling"]
    labels = dict(dataset.labels)
    for cases in (train, val):
        data_prep.finalize_cases(cases, application, methods, norm_stats, target_stats, labels, sampling == "weighted")
    if cfg["loss"]["name"] == AUTO:
        cfg["loss"]["name"] = application.default_loss

    n_out = application.out_channels(labels)
    spacing_zyx = list(reversed(data["spacing"]))
    net_name = cfg["network"]["name"]
    net_args = network_arguments(net_name, len(channel_names), n_out, patch_zyx, spacing_zyx,
                                 {**application.network_defaults(net_name), **cfg["network"]["args"]})
    torch.manual_seed(cfg["training"]["seed"])
    model = build_network(cfg["network"]["name"], net_args).to(dev)
    loss_fn = build_loss(cfg["loss"]["name"], n_out, cfg["loss"]["args"])
    opt = cfg["optimizer"]
    optimizer = OPTIMIZERS.get(opt["name"])(model.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"])
    scheduler = SCHEDULERS.get(cfg["scheduler"]["name"])(optimizer, cfg["training"]["epochs"])
    resume_state = None
    if resume:
        weights, resume_state = load_checkpoint(out / "checkpoints" / "last", "cpu")
        model.load_state_dict(weights)
    if dist is not None:
        model = dist.wrap(model, dev)

    card = build_card(cfg, application, dataset, channel_names, methods, norm_stats, target_stats, labels,
                      net_args, len(train), len(val), sampling)
    if dist is None or dist.is_main:
        write_text_atomic(out / CONFIG, dump_config(cfg))
        write_card(out, card)
    transform = training_transforms(cfg, patch_zyx, sampling, n_out, application.target_is_label)
    trainer = Trainer(app=application, model=model, loss_fn=loss_fn, optimizer=optimizer, scheduler=scheduler,
                      train_data=train, train_transform=transform, val_data=val, config=cfg, device=dev,
                      reporter=reporter, model_dir=out, patch_zyx=patch_zyx, target_stats=target_stats,
                      labels=labels, dist=dist)
    reporter.watch_output(trainer.stop)  # stdout closed (the GUI went away): stop with a checkpoint

    def after_epoch(state):
        write_metrics_csv(out, state.history)
        card["validation"] = {"key_metric": application.key_metric, "best": state.best_metric,
                              "best_epoch": state.best_epoch + 1,
                              "metrics": next((h for h in state.history if h["epoch"] == state.best_epoch + 1), {})}
        card["training"]["epochs_completed"] = state.epoch
        write_card(out, card)
        if state.epoch == cfg["training"]["epochs"] or state.epoch % 10 == 0 or trainer.stop.requested:
            write_curves(out, state.history, application.key_metric)

    trainer.after_epoch_written = after_epoch
    state = trainer.fit(resume_state)
    if dist is None or dist.is_main:
        write_curves(out, state.history, application.key_metric)
    return out


def build_card(cfg, app, dataset, channel_names, methods, norm_stats, target_stats, labels, net_args, n_train,
               n_val, sampling) -> dict:
    label_values = sorted(set(labels.values()) | {0})
    names = {v: k for k, v in labels.items()}
    return {
        "format": CARD_FORMAT,
        "application": app.name,
        "engine_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "description": f"{app.name} model trained on {dataset.name}",
        "inputs": [{"name": name, "modality": name, "normalization": method, "statistics": stats}
                   for name, method, stats in zip(channel_names, methods, norm_stats)],
        "labels": [{"value": v, "name": names.get(v, "background" if v == 0 else f"label_{v}"),
                    "color": label_colour(i)} for i, v in enumerate(label_values)] if app.target_is_label else [],
        "target": {"statistics": target_stats} if target_stats else {},
        "spacing": cfg["data"]["spacing"],
        "orientation": "LPS",
        "patch_size": cfg["data"]["patch_size"],
        "network": {"name": cfg["network"]["name"], "args": net_args},
        "inference": dict(cfg["inference"]),
        "training": {"dataset": dataset.name, "train_cases": n_train, "validation_cases": n_val,
                     "epochs": cfg["training"]["epochs"], "seed": cfg["training"]["seed"], "loss": cfg["loss"]["name"],
                     "sampling": sampling, "epochs_completed": 0},
        "validation": {},
    }
