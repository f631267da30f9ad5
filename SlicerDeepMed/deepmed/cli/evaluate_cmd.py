"""``deepmed evaluate --reference R --prediction P [-o metrics.csv] [--json] [--probabilities PROBS [--model M]]``;
``deepmed evaluate --clicks-protocol --model M --reference MANIFEST [--max-clicks N] [-o clicks.csv]``.

Predictions that are tables (``deepmed infer``'s ``results.csv`` of case-level values) are compared with the
manifest's case values (``deepmed.evaluation.table_evaluation``); images with reference images."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="compare predictions with references (Dice, HD95, MAE, ...)")
    parser.add_argument("--reference", "-r", required=True, type=Path,
                        help="reference file, folder, or manifest (.json/.csv; its case values for a table)")
    parser.add_argument("--prediction", "-p", type=Path,
                        help="prediction file or folder, or a table of case-level results (results.csv)")
    parser.add_argument("-o", "--output", type=Path, help="write the per-case rows as CSV")
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    parser.add_argument("--kind", default="auto", choices=["auto", "labels", "intensities"],
                        help="what is compared: label maps (Dice, distances) or intensities (MAE, PSNR, SSIM); "
                             "auto: integer images are label maps")
    parser.add_argument("--mask", type=Path, help="regression: evaluate inside this mask")
    parser.add_argument("--resample", action="store_true", help="resample predictions onto the reference grid")
    parser.add_argument("--baseline-from", type=Path, help="regression: also score B-spline interpolation of these "
                        "lower-resolution inputs (file, or folder by case id) onto the reference grid")
    parser.add_argument("--no-distances", action="store_true", help="skip hd, hd95 and assd")
    parser.add_argument("--probabilities", type=Path, help="label maps: also the calibration (ECE, 15 bins) of "
                        "these class probability maps (deepmed infer --probabilities), matched by case id")
    parser.add_argument("--model", help="with --probabilities: the model that wrote them (folder or library id); "
                        "its label values order the channels and its temperature gives the ECE before scaling")
    clicks = parser.add_argument_group("number-of-clicks curves of an interactive model (--clicks-protocol)")
    clicks.add_argument("--clicks-protocol", action="store_true",
                        help="simulate clicks (centre of the largest error) on the held-out cases of the --reference "
                             "manifest and report Dice after 0, 1, 3, 5, 10 clicks and NoC@85/90 of --model; -o "
                             "writes the per-case CSV and a JSON beside it")
    clicks.add_argument("--max-clicks", type=int, default=20, help="clicks per case and label (the NoC cap)")
    clicks.add_argument("--labels", help="comma-separated label names (default: every label of the model)")
    clicks.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from deepmed.evaluation.evaluate import evaluate, format_summary, rows_to_json, write_csv
    from deepmed.evaluation.table_evaluation import is_table
    from deepmed.utils.atomic import check_output_folder

    if args.output is not None:
        check_output_folder(args.output)
    if args.clicks_protocol:
        from deepmed.cli.click_protocol_cmd import run_click_protocol

        return run_click_protocol(args)
    if args.prediction is None:
        from deepmed.errors import DeepMedError

        raise DeepMedError("evaluate: --prediction is required (or --clicks-protocol with --model)")
    if is_table(args.prediction):
        return _run_table(args)
    calibration = _probability_calibration(args) if args.probabilities is not None else None
    rows = evaluate(args.reference, args.prediction, kind=args.kind, mask=args.mask, resample=args.resample,
                    distances=not args.no_distances, baseline_from=args.baseline_from)
    if calibration is not None:
        rows = [{**row, **calibration.per_case.get(row.get("case"), {})} for row in rows]
    if args.output is not None:
        write_csv(rows, args.output)
    if args.json:
        print(rows_to_json(rows))
    else:
        print(format_summary(rows))
        if calibration is not None:
            print(calibration.summary())
        if args.output is not None:
            print(f"per-case metrics written to {args.output}")
    return 0


def _probability_calibration(args: argparse.Namespace):
    """The ECE of ``--probabilities`` against the references (before/after scaling when ``--model`` has a
    temperature)."""
    from deepmed.errors import DeepMedError
    from deepmed.evaluation.evaluate import find_pairs
    from deepmed.evaluation.probability_calibration import evaluate_probabilities

    pairs, names = find_pairs(args.reference, args.prediction)
    values, temperature = (sorted(set(names) | {0}) if names else None), None
    if args.model is not None:
        from deepmed.model.card import ModelCard
        from deepmed.zoo.library import resolve_model

        card = ModelCard.read(resolve_model(args.model), need_weights=False)
        if not card.labels:
            raise DeepMedError(f"--model {args.model}: has no labels (a segmentation model wrote the probabilities)")
        values = [label.value for label in card.labels]
        temperature = card.calibration.temperature if card.calibration is not None else None
    return evaluate_probabilities(pairs, args.probabilities, values, temperature)


def _run_table(args: argparse.Namespace) -> int:
    import json

    from deepmed.evaluation.table_evaluation import evaluate_table, format_table_summary, write_outputs

    result = evaluate_table(args.reference, args.prediction)
    written = write_outputs(result, args.output) if args.output is not None else []
    if args.json:
        print(json.dumps({"metrics": result.metrics, "classes": result.classes, "confusion": result.confusion,
                          "rows": result.rows}, indent=2))
    else:
        print(format_table_summary(result))
        if written:
            print(f"per-case rows written to {written[0]}; also {', '.join(p.name for p in written[1:])}")
    return 0
