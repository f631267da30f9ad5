"""``plan(fingerprint, config, device, budget)``: every training decision made before training, saved as
``plan.json`` in the model directory and printed by ``deepmed plan``.

The plan is pure: the same fingerprint, configuration, device and budget give the same plan.
"""

from __future__ import annotations

import copy
import json

from deepmed.applications import get_trainable_application
from deepmed.training.config import AUTO

PLAN_FILE = "plan.json"
PLAN_FORMAT = "deepmed-plan/1"
ITERATIONS_PER_EPOCH = 50  # an epoch is a fixed number of iterations, whatever the number of cases
VALIDATION_SHARE = 0.1  # at most this share of the wall time goes to validation when validation is "auto"


def plan(fingerprint: dict, config: dict, device: str = "cpu", budget_s: float | None = None) -> dict:
    """The training plan for ``config`` (a resolved configuration) on a dataset with ``fingerprint``."""
    config = copy.deepcopy(config)
    app = get_trainable_application(config["app"])
    t = config["training"]
    result: dict = {"format": PLAN_FORMAT, "application": app.name, "device": device,
                    "dataset": {k: fingerprint[k] for k in ("name", "cases", "spacing", "size") if k in fingerprint},
                    "reasons": {}}
    result.update(app.plan(fingerprint, config, device, result["reasons"]))
    batch_size, lr = _batch_and_lr(app, result, fingerprint, config, device)
    iterations = int(t["iterations_per_epoch"]) or ITERATIONS_PER_EPOCH
    result["schedule"] = {
        "iterations_per_epoch": iterations,
        "epochs": int(t["epochs"]),
        "time_limit_s": float(budget_s) if budget_s else None,
        "batch_size": batch_size,
        "lr": lr,
        "lr_schedule": config["scheduler"]["name"],
        "validate_every": int(t["val_every"]) or "auto",
        "validation_share": VALIDATION_SHARE,
    }
    if budget_s:
        result["reasons"]["schedule"] = (f"time budget {budget_s:.0f} s: iterations and the learning-rate schedule "
                                         "follow the wall time measured on this machine; epochs are a cap")
    else:
        result["reasons"]["schedule"] = f"{int(t['epochs'])} epochs of {iterations} iterations"
    if not t["val_every"]:
        result["reasons"]["validation"] = (f"validate when it costs at most {VALIDATION_SHARE:.0%} of the time "
                                           "(measured), and at the end")
    return result


def _batch_and_lr(app, result: dict, fingerprint: dict, config: dict, device: str) -> tuple[int, float]:
    """The application's own batch size and learning rate where the configuration says auto (with its
    reasons), the configuration's where it names them."""
    batch, lr = config["training"]["batch_size"], config["optimizer"]["lr"]
    defaults = app.training_defaults(result, fingerprint, device) if AUTO in (batch, lr) else None
    reasons = result["reasons"]
    if batch == AUTO:
        batch, reasons["batch_size"] = defaults.batch_size, f"{app.name}: {defaults.batch_reason}"
    else:
        reasons["batch_size"] = f"{batch}: from the configuration (training.batch_size)"
    if lr == AUTO:
        lr, reasons["lr"] = defaults.lr, f"{app.name}: {defaults.lr_reason}"
    else:
        reasons["lr"] = f"{float(lr):g}: from the configuration (optimizer.lr)"
    return int(batch), float(lr)


def resolved_config(config: dict, result: dict) -> dict:
    """``config`` with the planned batch size and learning rate in place of ``auto`` (what the optimiser is
    built from and what ``config.yaml`` keeps, so that a resumed run continues with the same values)."""
    config = copy.deepcopy(config)
    config["training"]["batch_size"] = result["schedule"]["batch_size"]
    config["optimizer"]["lr"] = result["schedule"]["lr"]
    return config


def format_plan(result: dict) -> str:
    """The plan for people: one decision per line with its reason."""
    lines = [f"plan for {result['dataset'].get('name', 'dataset')} ({result['application']}, {result['device']})"]
    skip = {"format", "application", "device", "reasons", "dataset"}
    for key, value in result.items():
        if key in skip:
            continue
        text = json.dumps(value) if not isinstance(value, dict) else \
            ", ".join(f"{k}={json.dumps(v)}" for k, v in value.items() if k != "args")
        lines.append(f"  {key:16s} {text}")
        if key == "network" and isinstance(value, dict):
            lines.append(f"  {'':16s} args={json.dumps(value.get('args', {}))}")
    lines.append("why:")
    lines.extend(f"  {key:16s} {reason}" for key, reason in result["reasons"].items())
    return "\n".join(lines)
