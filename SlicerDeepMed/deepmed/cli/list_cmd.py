"""``deepmed list networks|losses|applications|... [--app APP] [--trainable] [--json]``: what the registries hold."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepmed.errors import DeepMedError

REGISTRIES = {
    "networks": ("deepmed.networks", "NETWORKS"),
    "losses": ("deepmed.losses", "LOSSES"),
    "applications": ("deepmed.applications", "APPLICATIONS"),
    "optimizers": ("deepmed.optim", "OPTIMIZERS"),
    "schedulers": ("deepmed.optim", "SCHEDULERS"),
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("list", help="list the available networks, losses, applications, models, ...")
    parser.add_argument("what", choices=sorted([*REGISTRIES, "models", "choices"]),
                        help="choices: with --json, what the Train panel offers in one answer: the trainable "
                             "applications and, per application, its networks and losses")
    parser.add_argument("--library", type=Path, help="models only: the library folder (default: $DEEPMED_LIBRARY)")
    parser.add_argument("--app", help="losses and networks only: those that fit this application (segmentation, "
                                      "classification, ...)")
    parser.add_argument("--trainable", action="store_true",
                        help="applications only: those deepmed trains (not the ones that only run imported models)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: {name: description}, or with --app a list of names")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import importlib

    if args.what == "models":
        return _list_models(args)
    if args.what == "choices":
        print(json.dumps(training_choices(), indent=1))
        return 0
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


def training_choices() -> dict:
    """``{"applications": {name: description} (trainable, the default first), "networks": {application: [names]},
    "losses": {application: [names]}}``: the Train panel's choices from one worker."""
    from deepmed.applications import APPLICATIONS, get_trainable_application, trainable_application_names
    from deepmed.losses import losses_for
    from deepmed.training.config import DEFAULTS

    described = APPLICATIONS.describe()
    names = trainable_application_names()
    names = [DEFAULTS["app"]] + [n for n in names if n != DEFAULTS["app"]]
    return {"applications": {name: described[name] for name in names},
            "networks": {name: get_trainable_application(name).network_choices() for name in names},
            "losses": {name: losses_for(APPLICATIONS.canonical(name)) for name in names}}


def _list_models(args: argparse.Namespace) -> int:
    """The library's models, one line each: the promoted version (what the plain id runs) and every version."""
    from deepmed.zoo.library import installed_models, library_dir

    models = installed_models(args.library)
    rows = [{"id": m.id, "application": m.application, "promoted": m.version, "versions": list(m.versions),
             "path": str(m.path)} for m in models]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no models in {args.library or library_dir()}")
    for row in rows:
        versions = ", ".join(f"@{v}" + ("*" if v == row["promoted"] else "") for v in row["versions"])
        print(f"{row['id']:28s} {row['application']:16s} versions {versions}  (* promoted: {row['id']} runs it)")
    return 0
