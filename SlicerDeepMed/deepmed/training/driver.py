"""The training driver: request -> prepared run (plan) -> build -> train.

    TrainRequest -> prepare_run (config -> application -> fingerprint -> plan, saved as plan.json)
                 -> application.prepare_data / build_parts -> Trainer.fit -> model directory
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import yaml

from deepmed import __version__
from deepmed.distributed import init_distributed
from deepmed.errors import DeepMedError, DeepMedInterrupted
from deepmed.model.device import pick_device
from deepmed.model.directory import CARD, CARD_FORMAT, CONFIG, write_card, write_curves, write_metrics_csv
from deepmed.model.transfer import InitSource, adopt_network, read_init_model, targets_differ, transfer_weights
from deepmed.model.weights import split_networks
from deepmed.planning.plan import PLAN_FILE, Plan
from deepmed.planning.settings import TrainingSettings
from deepmed.progress import make_reporter
from deepmed.training.calibrate import calibrate_model, will_calibrate
from deepmed.training.checkpoint import find_checkpoint, load_checkpoint
from deepmed.training.clock import Clock
from deepmed.training.config import dump_config
from deepmed.training.prepare import PreparedRun, prepare_run, run_config
from deepmed.training.request import TrainRequest
from deepmed.training.tensorboard_log import with_tensorboard
from deepmed.training.trainer import Trainer, TrainState
from deepmed.utils.atomic import write_text_atomic
from deepmed.utils.auto import AUTO


def _check_out_dir(out: Path, continuing: str | None) -> None:
    if not out.parent.is_dir():
        raise DeepMedError(f"{out}: output folder {out.parent} does not exist")
    has_model = (out / CARD).exists() or (out / "checkpoints").exists()
    if continuing and find_checkpoint(out / "checkpoints" / "last") is None:
        raise DeepMedError(f"{out}: no checkpoint to {continuing} from (checkpoints/last missing)")
    if not continuing and has_model:
        raise DeepMedError(f"{out}: already holds a model; pass --resume (or --extend) to continue it, "
                           "or choose another --out")


def train(dataset, out=None, **options) -> Path:
    """Train a model and write its model directory; returns the directory.

    ``train(TrainRequest(...))``, or ``train(dataset, out, app=..., epochs=..., ...)`` with the fields of
    ``TrainRequest`` as keywords (see there).
    """
    request = dataset if isinstance(dataset, TrainRequest) else TrainRequest(dataset=dataset, out=out, **options)
    reporter = make_reporter(request.progress)
    try:
        return _prepare_and_run(request, reporter)
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


def _prepare_and_run(request: TrainRequest, reporter) -> Path:
    out, continuing = request.out, request.continuing
    if continuing and (request.init is not None or request.init_fold is not None):
        raise DeepMedError(f"--init starts a training from another model; --{continuing} continues {out} from its "
                           "checkpoint (its init was applied when it started): drop --init")
    _check_out_dir(out, continuing)
    if continuing:
        user = yaml.safe_load((out / CONFIG).read_text()) if (out / CONFIG).is_file() else {}
        saved_app = user.get("app")
        if request.app is not None and saved_app is not None and request.app != saved_app:
            raise DeepMedError(f"{out}: holds a {saved_app} model, cannot {continuing} it as {request.app}")
    else:
        user = request.config
    cfg = run_config(user, request.overrides, request.typed_settings())
    training = TrainingSettings.from_config(cfg)
    kind = training.device if training.device != AUTO else ("cuda" if torch.cuda.is_available() else "cpu")
    dist = init_distributed(kind)
    try:
        dev = pick_device(training.device)
        if dist is not None and dev.type == "cuda":
            dev = torch.device("cuda", dist.local_rank)
        prepared = prepare_run(request.dataset, cfg, dev.type)
        out.mkdir(exist_ok=True)
        return _run(request, prepared, RunContext(dev, reporter, dist))
    finally:
        if dist is not None:
            dist.close()


@dataclass(frozen=True)
class RunContext:
    """Where a prepared run trains: its device, its progress reporter and its ranks (None: one process)."""

    device: torch.device
    reporter: object
    dist: object = None

    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.is_main


def _start_plan(request: TrainRequest, prepared: PreparedRun) -> tuple[Plan, InitSource | None]:
    """The plan this run trains with: shared by the folds, restored from the run it continues, or adopting
    the init model's network (each a new value); and the init model to load weights from."""
    plan = prepared.plan if request.shared_plan is None else prepared.plan.with_shared(request.shared_plan)
    training = TrainingSettings.from_config(prepared.config)
    if request.continuing:
        return _restored_init(request.out, plan), None
    if not training.init:
        return plan, None
    where = (request.resolve_model or _model_directory)(training.init)
    source = read_init_model(where, training.init_fold)
    application = prepared.application
    return adopt_network(plan, source, training.init_lr_factor, accepts=application.accepts_init,
                         extra_inputs=application.extra_inputs(plan)), source


def _run(request: TrainRequest, prepared: PreparedRun, context: RunContext) -> Path:
    out, cfg, application, reporter = request.out, prepared.config, prepared.application, context.reporter
    extend = bool(request.extend)
    plan, source = _start_plan(request, prepared)
    data = application.prepare_data(prepared.loaded_train, prepared.loaded_val, prepared.dataset, plan, cfg)
    torch.manual_seed(TrainingSettings.from_config(cfg).seed)
    parts = application.build_parts(plan, cfg, data.fitted)
    card = build_card(cfg, plan, application, prepared.dataset, data, len(prepared.train_cases),
                      len(prepared.val_cases))
    if source is not None:
        report = transfer_weights(parts.networks, source, application.output_heads(plan),
                                  targets_differ(source.card, card), application.input_stems(plan))
        plan = plan.with_init(plan.init, loaded_tensors=report.loaded, reinitialized=report.reinitialized)
        if context.is_main:
            reporter.emit("initialized", model=source.model_id, path=str(source.path), fold=source.fold,
                          loaded_tensors=report.loaded, reinitialized=report.reinitialized)
    if plan.init:
        card["training"]["initialized_from"] = dict(plan.init)
    resume_state = None
    if request.continuing:
        weights, resume_state = load_checkpoint(out / "checkpoints" / "last", "cpu")
        for name, state in split_networks(weights, list(parts.networks)).items():
            parts.networks[name].load_state_dict(state)
        if extend:
            resume_state = _extension_state(resume_state)
    if resume_state is not None and (out / CARD).is_file():  # a run stopped before its first epoch has no weights
        card["created"] = json.loads((out / CARD).read_text(encoding="utf-8")).get("created", card["created"])
    if context.is_main:
        write_text_atomic(out / CONFIG, dump_config(cfg))
        plan.save(out / PLAN_FILE)
        write_card(out, card)
    seconds_before = 0.0 if (extend or resume_state is None) else resume_state["trainer"].get("seconds", 0.0)
    clock = Clock(request.started_at, plan.schedule.time_limit_s, budget_before=seconds_before)
    clock.passes_at_end += int(will_calibrate(application, data))  # the calibration: about one validation
    board = None
    if context.is_main:  # TensorBoard event files beside curves.png, where tensorboard is installed
        reporter, board = with_tensorboard(reporter, out, plan.schedule.iterations_per_epoch,
                                           _resume_step(resume_state, plan.schedule.iterations_per_epoch))
    trainer = Trainer(app=application, parts=parts, data=data, transform=application.training_transform(plan, cfg),
                      plan=plan, config=cfg, device=context.device, reporter=reporter, model_dir=out,
                      dist=context.dist, clock=clock, extend=extend, stop_file=request.stop_file)
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

    def before_finished(state: TrainState) -> dict:
        calibration = calibrate_model(application, parts, data, plan, out, context.device)
        if calibration is None:
            return {}
        card["calibration"] = calibration.to_dict()
        write_card(out, card)
        return {"calibration": calibration.to_dict()}

    trainer.after_epoch_written = after_epoch
    trainer.before_finished = before_finished
    try:
        state = trainer.fit(resume_state)
    finally:
        if board is not None:
            board.close()
    if context.is_main:
        write_curves(out, state.history, application.metric_names(), application.key_metric)
    return out


def _resume_step(resume_state: dict | None, iterations_per_epoch: int) -> int:
    """The global iterations a continued run starts after (0 for a new run)."""
    if resume_state is None:
        return 0
    return resume_state["trainer"]["epoch"] * iterations_per_epoch + resume_state["trainer"]["iteration"]


def _model_directory(model) -> Path:
    """``training.init`` without a library to look ids up in: a model directory."""
    path = Path(model)
    if not path.is_dir():
        raise DeepMedError(f"training.init: {model}: no such model directory")
    return path


def _restored_init(out: Path, plan: Plan) -> Plan:
    """A fine-tuned run continues with the network it started with (from its saved plan), without re-reading
    the init model (which may have been removed since) and without applying its weights again."""
    saved_path = out / PLAN_FILE
    if not saved_path.is_file():
        return plan
    saved = Plan.load(saved_path)
    if not saved.init:
        return plan
    kept = {key: saved.reasons.get(key, "as when this run started") for key in ("network", "init", "lr_peak")}
    return replace(plan, network=saved.network, init=saved.init,
                   schedule=replace(plan.schedule, lr_peak=saved.schedule.lr_peak)).with_reasons(**kept)


def _extension_state(state: dict) -> dict:
    """A finished run's state, ready to train on: keeps the best model and history, restarts the schedule."""
    state = dict(state)
    state["trainer"] = {**state["trainer"], "iteration": 0, "epochs_without_improvement": 0, "seconds": 0.0}
    state["rng"] = None
    return state


def build_card(cfg: dict, plan: Plan, app, dataset, data, n_train: int, n_val: int) -> dict:
    training = TrainingSettings.from_config(cfg)
    return {
        "format": CARD_FORMAT,
        "application": app.name,
        "output_kind": app.output_kind,
        "engine_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "description": f"{app.name} model trained on {dataset.name}",
        **app.card_fields(plan, data.fitted, dataset, cfg),
        "training": {"dataset": dataset.name, "train_cases": n_train, "validation_cases": n_val,
                     "epochs": training.epochs, "time_limit_s": plan.schedule.time_limit_s,
                     "seed": training.seed, "loss": plan.loss, "sampling": plan.sampling,
                     "epochs_completed": 0},
        "validation": {},
    }
