"""``deepmed evaluate --clicks-protocol --model M --reference MANIFEST``: number-of-clicks curves of an interactive
model on the manifest's held-out cases (``deepmed.evaluation.click_protocol``)."""

from __future__ import annotations

import argparse
import json
import sys


def run_click_protocol(args: argparse.Namespace) -> int:
    from deepmed.errors import DeepMedError
    from deepmed.evaluation.click_protocol import evaluate_click_curves, session_refine

    if args.model is None:
        raise DeepMedError("--clicks-protocol: --model is required (an interactive model folder or library id)")
    if args.prediction is not None:
        raise DeepMedError("--clicks-protocol: the model makes the predictions; leave out --prediction")
    if args.max_clicks < 1:
        raise DeepMedError(f"--max-clicks: expected at least 1, got {args.max_clicks}")
    if args.reference.suffix.lower() not in (".json", ".csv") and not args.reference.is_dir():
        raise DeepMedError(f"--reference {args.reference}: expected a dataset manifest (.json, .csv or an nnU-Net "
                           "folder) whose held-out cases have images and labels")
    from deepmed.data.manifest import Dataset
    from deepmed.interactive.session import InteractiveSession

    dataset = Dataset.load(args.reference)
    session = InteractiveSession(args.model, device=args.device)
    labels = [name.strip() for name in args.labels.split(",") if name.strip()] if args.labels else list(session.labels)
    unknown = [name for name in labels if name not in session.labels]
    if unknown:
        raise DeepMedError(f"--labels: {', '.join(unknown)} not refined by model {args.model} "
                           f"(expected some of: {', '.join(session.labels)})")
    log = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    result = evaluate_click_curves(dataset, session_refine(session), labels, args.max_clicks, log=log)
    written = result.write(args.output, args.output.with_suffix(".json")) if args.output is not None else []
    if args.json:
        print(json.dumps(result.to_json()["summary"], indent=2))
    else:
        print(result.format_table())
        if written:
            print(f"per-case curves written to {written[0]} and {written[1]}")
    return 0
