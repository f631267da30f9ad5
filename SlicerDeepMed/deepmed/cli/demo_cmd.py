"""``deepmed demo [--app APP] --out DIR``: an application's end-to-end demo on embedded synthetic data (CPU):
train, infer on held-out cases, evaluate against the application's baseline. Default: the segmentation demo."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="train, infer and evaluate on an embedded synthetic cohort")
    parser.add_argument("--app", help="the application whose demo to run (deepmed list applications; "
                                      "default: the default application's, what make demo runs)")
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--epochs", type=int, help="override the demo's number of epochs")
    parser.add_argument("--progress", default="tqdm", choices=["tqdm", "jsonl", "none"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import importlib

    from deepmed.applications import DEFAULT_APPLICATION, get_trainable_application
    from deepmed.errors import DeepMedError

    app = get_trainable_application(args.app or DEFAULT_APPLICATION)
    if not app.demo:
        raise DeepMedError(f"application '{app.name}' has no demo")
    module_name, function = app.demo.split(":")
    return getattr(importlib.import_module(module_name), function)(args.out, args.epochs, args.progress)
