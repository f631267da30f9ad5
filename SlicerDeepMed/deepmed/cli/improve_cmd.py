"""``deepmed improve dataset.json --model NAME --time 5m [--library L]``: fine-tune a library model on the
dataset's labelled cases, compare old and new on its fixed held-out cases, promote when not worse
(workflows/improve.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    from deepmed.zoo.versions import DEFAULT_TOLERANCE

    parser = subparsers.add_parser("improve", help="fine-tune a library model on a grown dataset; promote it when "
                                                   "it is not worse on the held-out cases")
    parser.add_argument("dataset", type=Path, help="manifest (.json) with the labelled cases")
    parser.add_argument("--model", required=True, help="library id (NAME: its promoted version; NAME@N) or the "
                                                       "folder of a library model")
    parser.add_argument("--time", required=True, metavar="DURATION", help="fine-tuning budget: 300, 5m, 1h")
    parser.add_argument("--library", type=Path, help="model library folder (default: $DEEPMED_LIBRARY or per-user)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"promote when new mean Dice >= old - TOLERANCE (default {DEFAULT_TOLERANCE})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one training setting (repeatable)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--progress", default="tqdm", choices=["tqdm", "jsonl", "none"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from deepmed.progress import make_reporter
    from deepmed.workflows.improve import improve

    jsonl = args.progress == "jsonl"
    reporter = make_reporter("jsonl" if jsonl else "none")
    try:
        result = improve(args.dataset, args.model, args.time, library=args.library, tolerance=args.tolerance,
                         device=args.device, progress=args.progress, overrides=tuple(args.overrides),
                         emit=reporter.emit if jsonl else None)
    finally:
        reporter.close()
    if args.progress == "tqdm":
        print(result.comparison.table(), end="")
        state = ("promoted" if result.promoted
                 else f"kept, not promoted ({result.name} stays version {result.old_version})")
        print(f"{result.name}@{result.new_version} written to {result.new_dir}: {state}")
    return 0
