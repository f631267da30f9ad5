"""``deepmed doctor [--device auto|cpu|cuda|mps] [--json]``: packages, devices, a tiny training step."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("doctor", help="check packages, devices and a tiny training step")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="device for the tiny forward/backward check (default: the best available)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (for the Slicer panels)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when no problems were found, 1 otherwise."""
    from deepmed.doctor import format_report, run_checks

    report = run_checks(args.device)
    print(json.dumps(report) if args.json else format_report(report))
    return 1 if report["problems"] else 0
