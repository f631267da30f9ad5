"""``deepmed train --dataset dataset.json --app segmentation --out MODEL_DIR ...``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a model (an application: deepmed list applications)")
    parser.add_argument("--dataset", required=True, type=Path, help="manifest (.json), CSV or nnU-Net folder")
    parser.add_argument("--app", help="application (default segmentation; deepmed list applications)")
    parser.add_argument("--out", required=True, type=Path, help="model directory to write")
    parser.add_argument("--config", type=Path, help="YAML/JSON training configuration")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--device", help="auto, cpu, cuda or mps")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set training.batch_size=4 (repeatable)")
    parser.add_argument("--time-limit", metavar="DURATION",
                        help="train to this wall-time budget and end on time with the best model: 600, 10m, 1h30m")
    parser.add_argument("--resume", action="store_true", help="continue a stopped run from MODEL_DIR/checkpoints/last")
    parser.add_argument("--extend", metavar="DURATION",
                        help="train a finished model for this much longer (fresh, lower learning-rate schedule)")
    parser.add_argument("--init", metavar="MODEL_OR_ID",
                        help="fine-tune: start from this model's weights (a model directory or library id; same "
                             "network, a new output head when the labels differ)")
    parser.add_argument("--init-fold", type=int, metavar="K",
                        help="with --init of a cross-validation ensemble: start from fold K (default its first)")
    parser.add_argument("--folds", metavar="all|N|0,2",
                        help="cross-validation over the manifest's splits: every fold, out-of-fold evaluation and "
                             "a fold ensemble in --out (--time-limit then applies to each fold)")
    parser.add_argument("--stop-file", type=Path, help="stop (with a checkpoint) as soon as this file appears")
    parser.add_argument("--progress", default="tqdm", choices=["tqdm", "jsonl", "none"],
                        help="tqdm bar for people, JSON lines for programs (docs/training.md)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from deepmed.training.driver import train
    from deepmed.training.request import TrainRequest
    from deepmed.zoo.library import resolve_model

    started_at = getattr(args, "started_at", None)  # set by deepmed.cli.main: when the process started
    if args.folds is not None:
        from deepmed.errors import DeepMedError
        from deepmed.workflows.cross_validation import train_folds

        if args.resume or args.extend:
            raise DeepMedError("--folds trains every fold anew: it cannot be combined with --resume or --extend")
        request = TrainRequest(dataset=args.dataset, out=args.out, app=args.app, config=args.config,
                               overrides=tuple(args.overrides), device=args.device, time_limit=args.time_limit,
                               epochs=args.epochs, progress=args.progress, init=args.init, init_fold=args.init_fold,
                               resolve_model=resolve_model, stop_file=args.stop_file, started_at=started_at)
        out = train_folds(request, folds=args.folds)
        if args.progress == "tqdm":
            summary = out / "cross_validation" / "summary.txt"
            print(summary.read_text() if summary.is_file() else "", end="")
            print(f"{len(args.folds.split(',')) if ',' in args.folds else 'all'} fold(s) and their ensemble "
                  f"written to {out} (out-of-fold report: {out / 'cross_validation'})")
        return 0
    out = train(TrainRequest(dataset=args.dataset, out=args.out, app=args.app, config=args.config,
                             overrides=tuple(args.overrides), epochs=args.epochs, device=args.device,
                             resume=args.resume, time_limit=args.time_limit, extend=args.extend,
                             started_at=started_at, stop_file=args.stop_file, progress=args.progress,
                             init=args.init, init_fold=args.init_fold, resolve_model=resolve_model))
    if args.progress == "tqdm":
        print(f"model written to {out}")
    return 0
