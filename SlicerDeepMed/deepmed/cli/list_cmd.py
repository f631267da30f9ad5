"""``deepmed list networks|losses|applications|... [--app APP] [--trainable] [--json]``: what the registries hold."""

from __future__ import annotations

import argparse
import json

from deepmed.errors import DeepMedError

REGISTRIES = {
    "networks": ("deepmed.networks", "NETWORKS"),
    "losses": ("deepmed.losses", "LOSSES"),
    "applications": ("deepmed.applications", "APPLICATIONS"),
    "optimizers": ("deepmed.optim", "OPTIMIZERS"),
    "schedulers": ("deepmed.optim", "SCHEDULERS"),
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("list", help="list the available networks, losses, applications, ...")
    parser.add_argument("what", choices=sorted(REGISTRIES))
    parser.add_argument("--app", help="losses and networks only: those that fit this application (segmentation, "
                                      "classification, ...)")
    parser.add_argument("--trainable", action="store_true",
                        help="applications only: those deepmed trains (not the ones that only run imported models)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: {name: description}, or with --app a list of names")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import importlib

    module_name, attribute = REGISTRIES[args.what]
    registry = getattr(importlib.import_module(module_name), attribute)
    described = registry.describe()
    if args.app is not None:
        if args.what not in ("losses", "networks"):
            raise DeepMedError(f"--app: only 'deepmed list losses|networks' take an application, "
                               f"not 'list {args.what}'")
        from deepmed.applications import APPLICATIONS, get_trainable_application
        from deepmed.losses import losses_for

        application = get_trainable_application(args.app)  # losses and networks are for training
        if args.what == "losses":
            names = losses_for(APPLICATIONS.canonical(args.app))
        else:
            names = application.network_choices()
        if args.json:
            print(json.dumps(names))
            return 0
        described = {name: described[name] for name in names}
    if args.trainable and args.what != "applications":
        raise DeepMedError(f"--trainable: only 'deepmed list applications' takes it, not 'list {args.what}'")
    runs_only: set[str] = set()
    if args.what == "applications":  # the engine's default application first (what a panel preselects)
        from deepmed.applications import trainable_application_names
        from deepmed.training.config import DEFAULTS

        trainable = trainable_application_names()
        runs_only = set(described) - set(trainable)
        if args.trainable:
            described = {name: described[name] for name in trainable}
        default = DEFAULTS["app"]
        described = {default: described[default], **{k: v for k, v in described.items() if k != default}}
    if args.json:
        print(json.dumps(described, indent=1))
        return 0
    for name, description in described.items():
        print(f"{name:28s} {description}" + (" [runs imported models; not trained here]" if name in runs_only else ""))
    return 0
