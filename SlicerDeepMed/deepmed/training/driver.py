"""The training driver: plan -> build -> run.

    dataset -> application.load_cases -> fingerprint -> plan (saved as plan.json)
            -> application.prepare_data / build_parts -> Trainer.fit -> model directory
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from deepmed import __version__
from deepmed.applications import get_trainable_application
from deepmed.data.manifest import Dataset
from deepmed.errors import DeepMedError, DeepMedInterrupted
from deepmed.model.device import pick_device
from deepmed.model.directory import CARD, CARD_FORMAT, CONFIG, write_card, write_curves, write_metrics_csv
from deepmed.model.transfer import adopt_network, read_init_model, targets_differ, transfer_weights
from deepmed.model.weights import split_networks
from deepmed.progress import make_reporter
from deepmed.training.checkpoint import find_checkpoint, load_checkpoint
from deepmed.training.clock import Clock
from deepmed.training.config import AUTO, dump_config, load_config_file, parse_duration, resolve_config
from deepmed.training.distributed import init_distributed
from deepmed.training.planner import PLAN_FILE, resolved_config
from deepmed.training.planner import plan as make_plan
from deepmed.training.trainer import Trainer, TrainState
from deepmed.utils.atomic import write_text_atomic


def _load_user_config(config) -> dict:
    if config is None:
        return {}
    if isinstance(config, dict):
        return config
    return load_config_file(config)


def split(dataset: Dataset, cfg: dict) -> tuple[list, list]:
    """Training and validation cases of the configured fold (a random share when the dataset has no splits)."""
    fold = cfg["training"]["fold"]
    if fold is not None and not dataset.splits:
        raise DeepMedError(f"{dataset.source or dataset.name}: training.fold={fold} needs folds in the manifest's "
                           "'splits'; make them once with 'deepmed dataset split DATASET --folds 5'")
    train, val, _ = dataset.split_cases(fold or 0)
    if not dataset.splits and cfg["training"]["val_fraction"] > 0 and len(train) >= 2:
        order = np.random.default_rng(cfg["training"]["seed"]).permutation(len(train))
        n_val = max(1, round(cfg["training"]["val_fraction"] * len(train)))
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    if not train:
        raise DeepMedError("no training cases (check the dataset's splits)")
    return train, val


def _check_out_dir(out: Path, continuing: str | None) -> None:
    if not out.parent.is_dir():
        raise DeepMedError(f"{out}: output folder {out.parent} does not exist")
    has_model = (out / CARD).exists() or (out / "checkpoints").exists()
    if continuing and find_checkpoint(out / "checkpoints" / "last") is None:
        raise DeepMedError(f"{out}: no checkpoint to {continuing} from (checkpoints/last missing)")
    if not continuing and has_model:
        raise DeepMedError(f"{out}: already holds a model; pass --resume (or --extend) to continue it, "
                           "or choose another --out")


def train(dataset, out, *, app: str | None = None, config=None, overrides: list[str] | None = None,
          epochs: int | None = None, device: str | None = None, resume: bool = False, time_limit=None,
          extend=None, started_at: float | None = None, progress="tqdm", shared_plan: dict | None = None,
          init=None, init_fold: int | None = None, resolve_model=None) -> Path:
    """Train a model and write its model directory; returns the directory.

    Args:
        dataset: a Dataset or a path (manifest, CSV, nnU-Net folder).
        out: model directory to create (or to continue with ``resume=True`` / ``extend``).
        app: an application name (``deepmed list applications``; default from the config, else segmentation).
        config: YAML/JSON path or dict; ``overrides``: ``["training.epochs=10", ...]``.
        epochs, device: shortcuts for ``training.epochs`` / ``training.device``.
        time_limit: train to this wall-time budget (seconds or ``"10m"``, ``"1h30m"``), ending on time.
        resume: continue a stopped run from ``out/checkpoints/last`` with the saved configuration.
        extend: continue a finished model for this much more time (a fresh, lower learning-rate schedule).
        started_at: when the run began (``time.time()``); the time budget counts from there (default: now).
        progress: ``tqdm``, ``jsonl``, ``none``, or a callable receiving each event as a dict.
        shared_plan: plan entries that replace this run's own (the cross-validation folds share one plan).
        init: fine-tune: start from this model's weights (``training.init``: a model directory, or a library id
            when ``resolve_model`` turns ids into directories); ``init_fold``: the fold of an ensemble.
            Not with ``resume`` / ``extend``, which continue from the checkpoint.
    """
    started_at = time.time() if started_at is None else started_at
    out = Path(out)
    reporter = make_reporter(progress)
    try:
        return _prepare_and_run(dataset, out, app, config, list(overrides or []), epochs, device, resume,
                                time_limit, extend, started_at, reporter, shared_plan,
                                {"init": init, "init_fold": init_fold, "resolve": resolve_model})
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


def _prepare_and_run(dataset, out, app, config, overrides, epochs, device, resume, time_limit, extend, started_at,
                     reporter, shared_plan, start) -> Path:
    if resume and extend:
        raise DeepMedError("--resume continues a stopped run, --extend a finished one: choose one")
    continuing = "resume" if resume else ("extend" if extend else None)
    if continuing and (start["init"] is not None or start["init_fold"] is not None):
        raise DeepMedError(f"--init starts a training from another model; --{continuing} continues {out} from its "
                           "checkpoint (its init was applied when it started): drop --init")
    _check_out_dir(out, continuing)
    if continuing:
        user = yaml.safe_load((out / CONFIG).read_text()) if (out / CONFIG).is_file() else {}
        saved_app = user.get("app")
        if app is not None and saved_app is not None and app != saved_app:
            raise DeepMedError(f"{out}: holds a {saved_app} model, cannot {continuing} it as {app}")
    else:
        user = _load_user_config(config)
    for key, value in (("app", app), ("training.epochs", epochs), ("training.device", device),
                       ("training.time_limit", extend or time_limit)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = resolve_config(user, overrides)
    for key in ("init", "init_fold"):
        if start[key] is not None:
            cfg["training"][key] = str(start[key]) if key == "init" else int(start[key])
    application = get_trainable_application(cfg["app"])
    dataset = dataset if isinstance(dataset, Dataset) else Dataset.load(dataset)
    application.check_dataset(dataset)
    kind = cfg["training"]["device"] if cfg["training"]["device"] != AUTO else \
        ("cuda" if torch.cuda.is_available() else "cpu")
    dist = init_distributed(kind)
    try:
        dev = pick_device(cfg["training"]["device"])
        if dist is not None and dev.type == "cuda":
            dev = torch.device("cuda", dist.local_rank)
        out.mkdir(exist_ok=True)
        return _run(dataset, out, cfg, application, dev, reporter, resume, bool(extend), started_at, dist, shared_plan,
                    start["resolve"])
    finally:
        if dist is not None:
            dist.close()


def _run(dataset, out, cfg, application, dev, reporter, resume, extend, started_at, dist, shared_plan,
         resolve_model) -> Path:
    is_main = dist is None or dist.is_main
    train_cases, val_cases = split(dataset, cfg)
    loaded_train = application.load_cases(train_cases)
    loaded_val = application.load_cases(val_cases)
    fingerprint = application.fingerprint(loaded_train, dataset)
    budget = parse_duration(cfg["training"]["time_limit"])
    plan = make_plan(fingerprint, cfg, dev.type, budget)
    cfg = resolved_config(cfg, plan)
    for key, value in (shared_plan or {}).items():
        if key not in ("format", "dataset", "reasons", "schedule", "device"):
            plan[key] = value
            plan["reasons"][key] = "shared by every fold of the cross-validation (planned on all training cases)"
    source = None
    if resume or extend:
        _restore_init(out, plan)
    elif cfg["training"]["init"]:
        where = (resolve_model or _model_directory)(cfg["training"]["init"])
        source = read_init_model(where, cfg["training"]["init_fold"])
        adopt_network(plan, source, cfg["training"]["init_lr_factor"], accepts=application.accepts_init)
    data = application.prepare_data(loaded_train, loaded_val, dataset, plan, cfg)
    torch.manual_seed(cfg["training"]["seed"])
    parts = application.build_parts(plan, cfg, data.fitted)
    card = build_card(cfg, plan, application, dataset, data, len(train_cases), len(val_cases))
    if source is not None:
        report = transfer_weights(parts.networks, source, application.output_heads(plan),
                                  targets_differ(source.card, card))
        plan["init"].update(loaded_tensors=report.loaded, reinitialized=report.reinitialized)
        if is_main:
            reporter.emit("initialized", model=source.model_id, path=str(source.path), fold=source.fold,
                          loaded_tensors=report.loaded, reinitialized=report.reinitialized)
    if plan.get("init"):
        card["training"]["initialized_from"] = dict(plan["init"])
    resume_state = None
    if resume or extend:
        weights, resume_state = load_checkpoint(out / "checkpoints" / "last", "cpu")
        for name, state in split_networks(weights, list(parts.networks)).items():
            parts.networks[name].load_state_dict(state)
        if extend:
            resume_state = _extension_state(resume_state)
    if resume_state is not None and (out / CARD).is_file():  # a run stopped before its first epoch has no weights
        card["created"] = json.loads((out / CARD).read_text(encoding="utf-8")).get("created", card["created"])
    if is_main:
        write_text_atomic(out / CONFIG, dump_config(cfg))
        write_text_atomic(out / PLAN_FILE, json.dumps(plan, indent=2) + "\n")
        write_card(out, card)
    seconds_before = 0.0 if (extend or resume_state is None) else resume_state["trainer"].get("seconds", 0.0)
    clock = Clock(started_at, plan["schedule"]["time_limit_s"], budget_before=seconds_before)
    trainer = Trainer(app=application, parts=parts, data=data, transform=application.training_transform(plan, cfg),
                      plan=plan, config=cfg, device=dev, reporter=reporter, model_dir=out, dist=dist, clock=clock,
                      extend=extend)
    reporter.watch_output(trainer.stop)  # stdout closed (the GUI went away): stop with a checkpoint

    def after_epoch(state: TrainState):
        write_metrics_csv(out, state.history)
        card["validation"] = {"key_metric": application.key_metric, "best": state.best_metric,
                              "best_epoch": state.best_epoch + 1,
                              "metrics": next((h for h in state.history if h["epoch"] == state.best_epoch + 1), {})}
        card["training"]["epochs_completed"] = state.epoch
        card["training"]["seconds"] = round(state.seconds, 1)
        write_card(out, card)
        if state.epoch % 10 == 0 or trainer.stop.requested:
            write_curves(out, state.history, application.metric_names(), application.key_metric)

    trainer.after_epoch_written = after_epoch
    state = trainer.fit(resume_state)
    if is_main:
        write_curves(out, state.history, application.metric_names(), application.key_metric)
    return out


def _model_directory(model) -> Path:
    """``training.init`` without a library to look ids up in: a model directory."""
    path = Path(model)
    if not path.is_dir():
        raise DeepMedError(f"training.init: {model}: no such model directory")
    return path


def _restore_init(out: Path, plan: dict) -> None:
    """A fine-tuned run continues with the network it started with (from its saved plan), without re-reading
    the init model (which may have been removed since) and without applying its weights again."""
    saved_path = out / PLAN_FILE
    saved = json.loads(saved_path.read_text(encoding="utf-8")) if saved_path.is_file() else {}
    if saved.get("init"):
        plan["network"], plan["init"] = saved["network"], saved["init"]
        plan["schedule"]["lr_peak"] = saved.get("schedule", {}).get("lr_peak", 1.0)
        for key in ("network", "init", "lr_peak"):
            plan["reasons"][key] = saved.get("reasons", {}).get(key, "as when this run started")


def _extension_state(state: dict) -> dict:
    """A finished run's state, ready to train on: keeps the best model and history, restarts the schedule."""
    state = dict(state)
    state["trainer"] = {**state["trainer"], "iteration": 0, "epochs_without_improvement": 0, "seconds": 0.0}
    state["rng"] = None
    return state


def build_card(cfg, plan, app, dataset, data, n_train, n_val) -> dict:
    return {
        "format": CARD_FORMAT,
        "application": app.name,
        "output_kind": app.output_kind,
        "engine_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "description": f"{app.name} model trained on {dataset.name}",
        **app.card_fields(plan, data.fitted, dataset, cfg),
        "training": {"dataset": dataset.name, "train_cases": n_train, "validation_cases": n_val,
                     "epochs": cfg["training"]["epochs"], "time_limit_s": plan["schedule"]["time_limit_s"],
                     "seed": cfg["training"]["seed"], "loss": plan.get("loss"), "sampling": plan.get("sampling"),
                     "epochs_completed": 0},
        "validation": {},
    }
