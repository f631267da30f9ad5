"""``make_plan(app, fingerprint, config, device, budget)``: every training decision made before training, saved
as ``plan.json`` in the model directory and printed by ``deepmed plan``.

The plan is pure: the same application, fingerprint, configuration, device and budget give the same plan. The
caller hands in the application (planning sits below the applications, which use its rules).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from deepmed.planning.plan import PLAN_FILE, PLAN_FORMAT, NetworkChoice, Plan, Schedule, format_plan
from deepmed.planning.settings import OptimizerSettings, TrainingSettings, is_auto
from deepmed.utils.auto import AUTO

__all__ = ["ITERATIONS_PER_EPOCH", "PLAN_FILE", "PLAN_FORMAT", "VALIDATION_SHARE", "format_plan", "make_plan",
           "resolved_config"]

ITERATIONS_PER_EPOCH = 50  # an epoch is a fixed number of iterations, whatever the number of cases
VALIDATION_SHARE = 0.1  # at most this share of the wall time goes to validation when validation is "auto"


def make_plan(app, fingerprint: dict, config: dict, device: str = "cpu", budget_s: float | None = None) -> Plan:
    """The training plan of application ``app`` for ``config`` (a resolved configuration) on a dataset with
    ``fingerprint``."""
    config = copy.deepcopy(config)
    training, optimizer = TrainingSettings.from_config(config), OptimizerSettings.from_config(config)
    reasons: dict[str, str] = {}
    entries: dict[str, Any] = dict(app.plan(fingerprint, config, device, reasons))
    network = entries.pop("network", None)
    draft = Plan(application=app.name, device=device, reasons={},
                 dataset={k: fingerprint[k] for k in ("name", "cases", "spacing", "size") if k in fingerprint},
                 schedule=None, network=NetworkChoice.from_json(network, "plan") if network is not None else None,
                 loss=entries.pop("loss", None), sampling=entries.pop("sampling", None), specific=entries)
    batch_size, lr = _batch_and_lr(app, draft, fingerprint, training, optimizer, device, reasons)
    iterations = int(training.iterations_per_epoch) or ITERATIONS_PER_EPOCH
    schedule = Schedule(iterations_per_epoch=iterations, epochs=int(training.epochs),
                        time_limit_s=float(budget_s) if budget_s else None, batch_size=batch_size, lr=lr,
                        lr_schedule=_lr_schedule(optimizer.lr_schedule, budget_s, reasons),
                        validate_every=int(training.val_every) or "auto",
                        validation_share=VALIDATION_SHARE)
    if budget_s:
        reasons["schedule"] = (f"time budget {budget_s:.0f} s: iterations and the learning-rate schedule "
                               "follow the wall time measured on this machine; epochs are a cap")
    else:
        reasons["schedule"] = f"{int(training.epochs)} epochs of {iterations} iterations"
    if not training.val_every:
        reasons["validation"] = (f"validate when it costs at most {VALIDATION_SHARE:.0%} of the time "
                                 "(measured), and at the end")
    return replace(draft, schedule=schedule, reasons=reasons)


def _lr_schedule(configured: str, budget_s: float | None, reasons: dict) -> str:
    """The configured schedule, or for ``auto``: under a time budget a flat rate that decays over the last tenth
    (a class learned late, such as a small lesion, is still learning when the time runs out, and a cosine
    decay over the whole budget starves it: docs/benchmarks.md), else a cosine decay over the epochs."""
    if not is_auto(configured):
        reasons["lr_schedule"] = f"{configured}: from the configuration (scheduler.name)"
        return configured
    if budget_s:
        reasons["lr_schedule"] = ("wsd: a time budget: the learning rate stays at its peak and decays over the "
                                  "last tenth, so the classes learned last still learn at the end")
        return "wsd"
    reasons["lr_schedule"] = "cosine: decay to zero over the planned epochs"
    return "cosine"


def _batch_and_lr(app, draft: Plan, fingerprint: dict, training: TrainingSettings, optimizer: OptimizerSettings,
                  device: str, reasons: dict) -> tuple[int, float]:
    """The application's own batch size and learning rate where the configuration says auto (with its
    reasons), the configuration's where it names them."""
    batch, lr = training.batch_size, optimizer.lr
    defaults = app.training_defaults(draft, fingerprint, device) if AUTO in (batch, lr) else None
    if batch == AUTO:
        batch, reasons["batch_size"] = defaults.batch_size, f"{app.name}: {defaults.batch_reason}"
    else:
        reasons["batch_size"] = f"{batch}: from the configuration (training.batch_size)"
    if lr == AUTO:
        lr, reasons["lr"] = defaults.lr, f"{app.name}: {defaults.lr_reason}"
    else:
        reasons["lr"] = f"{float(lr):g}: from the configuration (optimizer.lr)"
    return int(batch), float(lr)


def resolved_config(config: dict, plan: Plan) -> dict:
    """``config`` with the planned batch size and learning rate in place of ``auto`` (what the optimiser is
    built from and what ``config.yaml`` keeps, so that a resumed run continues with the same values)."""
    config = copy.deepcopy(config)
    config["training"]["batch_size"] = plan.schedule.batch_size
    config["optimizer"]["lr"] = plan.schedule.lr
    config["scheduler"]["name"] = plan.schedule.lr_schedule
    return config
