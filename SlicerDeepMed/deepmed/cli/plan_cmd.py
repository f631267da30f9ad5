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
    from deepmed.applications import get_trainable_application
    from deepmed.data.manifest import Dataset
    from deepmed.model.device import pick_device
    from deepmed.training.config import load_config_file, parse_duration, resolve_config
    from deepmed.training.driver import split
    from deepmed.training.planner import format_plan, plan

    overrides = list(args.overrides)
    for key, value in (("app", args.app), ("training.device", args.device), ("training.time_limit", args.time_limit)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = resolve_config(load_config_file(args.config) if args.config else {}, overrides)
    app = get_trainable_application(cfg["app"])
    dataset = Dataset.load(args.dataset)
    app.check_dataset(dataset)
    train_cases, _ = split(dataset, cfg)
    fingerprint = app.fingerprint(app.load_cases(train_cases), dataset)
    device = pick_device(cfg["training"]["device"]).type if not args.device else args.device
    result = plan(fingerprint, cfg, device, parse_duration(cfg["training"]["time_limit"]))
    print(json.dumps(result, indent=2) if args.json else format_plan(result))
    return 0
