"""``deepmed list networks|losses|...``: what the registries hold."""

from __future__ import annotations

import argparse

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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import importlib

    module_name, attribute = REGISTRIES[args.what]
    registry = getattr(importlib.import_module(module_name), attribute)
    for name, description in registry.describe().items():
        print(f"{name:28s} {description}")
    return 0
