"""``deepmed review dataset.json --model M -o REVIEW_DIR``: predict the pool of unlabelled cases and rank it
for review (workflows/review.py); ``deepmed improve dataset.json --model M --time 5m``: fine-tune a library
model on the grown dataset and promote it when it is not worse (workflows/improve.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("review", help="predict and rank a dataset's pool of unlabelled cases for review")
    parser.add_argument("dataset", type=Path, help="manifest with a 'pool' of unlabelled cases")
    parser.add_argument("--model", required=True, help="model directory, or library id (NAME: its promoted version)")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="review folder: predictions/, uncertainty/, ranking.csv, review.json")
    parser.add_argument("--strategy", default="uncertainty", choices=["uncertainty", "random", "first"],
                        help="most uncertain first (default), a seeded random order, or the pool's order")
    parser.add_argument("--seed", type=int, default=0, help="seed of --strategy random")
    parser.add_argument("--limit", type=int, help="rank only this many cases")
    parser.add_argument("--library", type=Path, help="model library folder (default: $DEEPMED_LIBRARY or per-user)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--progress", default="tqdm", choices=["tqdm", "jsonl", "none"])
    parser.set_defaults(run=run_review)


def run_review(args: argparse.Namespace) -> int:
    from deepmed.progress import make_reporter
    from deepmed.workflows.review import review_pool

    reporter = make_reporter(args.progress)
    try:
        result = review_pool(args.dataset, args.model, args.output, strategy=args.strategy, seed=args.seed,
                             limit=args.limit, device=args.device, library=args.library, emit=reporter.emit)
    finally:
        reporter.close()
    for case, why in result.skipped:
        print(f"deepmed: skipped {case}: {why}", file=sys.stderr)
    if args.progress == "tqdm":
        for ranked in result.ranking[:10]:
            score = "-" if ranked.case.score is None else f"{ranked.case.score:.4f}"
            print(f"{ranked.rank:4d}  {ranked.case.case:24s} {score}")
        print(f"ranking of {len(result.ranking)} case(s) written to {result.ranking_file} "
              f"({result.predicted} predicted, {result.reused} reused)", file=sys.stderr)
    return 0
