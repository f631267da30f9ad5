"""Entry point of the ``deepmed`` command: dispatch to sub-commands; user errors end on one line, exit 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from deepmed import __version__
from deepmed.errors import DeepMedError, DeepMedInterrupted
from deepmed.utils.closed_output import say

#: When this process started running deepmed (the imports above are light): a time budget counts from here.
STARTED_AT = time.time()

#: command name -> module implementing ``add_parser(subparsers)`` and ``run(args) -> int``.
COMMANDS = {
    "dataset": "deepmed.cli.dataset_cmd",
    "doctor": "deepmed.cli.doctor_cmd",
    "evaluate": "deepmed.cli.evaluate_cmd",
    "plan": "deepmed.cli.plan_cmd",
    "train": "deepmed.cli.train_cmd",
    "infer": "deepmed.cli.infer_cmd",
    "review": "deepmed.cli.review_cmd",
    "improve": "deepmed.cli.improve_cmd",
    "export": "deepmed.cli.export_cmd",
    "demo": "deepmed.cli.demo_cmd",
    "list": "deepmed.cli.list_cmd",
    "zoo": "deepmed.cli.zoo_cmd",
    "remote": "deepmed.cli.remote_cmd",
    "worker": "deepmed.cli.worker_cmd",
}
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def stop_exit_code() -> int:
    """130 for a stopped run (checkpoint written); 0 on every rank under torchrun, which would otherwise take
    the stop for a failure (restart or error report) although every rank stopped as agreed."""
    return 0 if int(os.environ.get("WORLD_SIZE", "1")) > 1 else EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepmed", description="Deep learning for medical images "
                                     "(PyTorch + MONAI + SimpleITK), the engine of the DeepMed 3D Slicer extension.")
    parser.add_argument("--version", action="version", version=f"deepmed {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started_at = STARTED_AT  # the commands that keep time (train) count from here
    try:
        return int(args.run(args) or 0)
    except DeepMedInterrupted as exc:
        say(f"deepmed: stopped: {exc}")
        return stop_exit_code()
    except DeepMedError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            say(f"deepmed: error: {line}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        say("deepmed: interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
