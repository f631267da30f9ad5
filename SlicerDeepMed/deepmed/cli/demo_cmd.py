"""``deepmed demo --out DIR``: the end-to-end train -> segment -> evaluate demo on synthetic data (CPU)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="train, segment and evaluate on an embedded synthetic cohort")
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--epochs", type=int, help="override the demo's number of epochs")
    parser.add_argument("--progress", default="tqdm", choices=["tqdm", "jsonl", "none"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from deepmed.demo.run import main_demo

    return main_demo(args.out, args.epochs, args.progress)
