"""``deepmed plan dataset.json [--app ...] [--config ...] [--time-limit 10m]``: the training plan, without training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("plan", help="print the training plan (spacing, patch, schedule, ...) and why")
    parser.add_argument("dataset", type=Path, help="manifest (.json), CSV or nnU-Net folder")
    parser.add_argument("--app", help="application (default from the config, else segmentation)")
    parser.add_argument("--config", type=Path, help="YAML/JSON training configuration")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", help="plan for this device: cpu, cuda, mps (default: this machine's)")
    parser.add_argument("--time-limit", metavar="DURATION", help="plan for a wall-time budget: 600, 10m, 1h30m")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (as saved in plan.json)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from deepmed.model.device import pick_device
    from deepmed.planning.plan import format_plan
    from deepmed.planning.settings import TrainingSettings
    from deepmed.training.prepare import prepare_run, run_config

    cfg = run_config(args.config, args.overrides, {key: value for key, value in (
        ("app", args.app), ("training.device", args.device), ("training.time_limit", args.time_limit))
        if value is not None})
    device = args.device or pick_device(TrainingSettings.from_config(cfg).device).type
    plan = prepare_run(args.dataset, cfg, device, load_validation=False).plan
    print(json.dumps(plan.to_json(), indent=2) if args.json else format_plan(plan))
    return 0
