"""``deepmed dataset scan | check | split | add-pool | add-label``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.utils.atomic import write_text_atomic


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("dataset", help="build, check and split dataset manifests")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    scan = actions.add_parser("scan", help="build a manifest by scanning a folder with file-name patterns")
    scan.add_argument("folder", type=Path)
    scan.add_argument("-o", "--output", type=Path, required=True, help="manifest to write (dataset.json)")
    scan.add_argument("--image", action="append", default=[], metavar="PATTERN",
                      help="file-name part of one channel (repeat per channel, in channel order)")
    scan.add_argument("--label", metavar="PATTERN", help="file-name part of the label files")
    scan.add_argument("--contains", action="append", default=[], metavar="TEXT", help="keep only names with TEXT")
    scan.add_argument("--not-contains", action="append", default=[], metavar="TEXT", help="drop names with TEXT")
    scan.add_argument("--label-not-contains", action="append", default=[], metavar="TEXT")
    scan.add_argument("--image-not-contains", action="append", default=[], metavar="TEXT")
    scan.add_argument("--remove-from-id", metavar="REGEX", help="regular expression removed from subject ids "
                      "before pairing (e.g. '_sm$')")
    scan.add_argument("--channel-name", action="append", default=[], metavar="NAME",
                      help="name of each channel (e.g. CT, T1), in channel order")
    scan.add_argument("--name", help="dataset name (default: the folder's name)")
    scan.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    scan.set_defaults(run=run_scan)

    check = actions.add_parser("check", help="validate every case and print the dataset fingerprint")
    check.add_argument("dataset", type=Path, help="manifest (.json), CSV or nnU-Net raw folder")
    check.add_argument("--json", action="store_true", help="print the fingerprint and problems as JSON")
    check.add_argument("--report", type=Path, help="also write the JSON report (per-case status, suggested "
                       "training settings) to this file")
    check.set_defaults(run=run_check)

    split = actions.add_parser("split", help="store cross-validation folds or train/val/test fractions")
    split.add_argument("dataset", type=Path, help="manifest (.json) to update")
    split.add_argument("--folds", type=int, help="number of cross-validation folds (default 5)")
    split.add_argument("--fractions", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                       help="one split by fractions, e.g. 0.7 0.15 0.15")
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(run=run_split)

    pool = actions.add_parser("add-pool", help="add unlabelled images (files or folders) to the manifest's pool")
    pool.add_argument("dataset", type=Path, help="manifest (.json) to update")
    pool.add_argument("paths", type=Path, nargs="+", metavar="FILE_OR_FOLDER")
    pool.add_argument("--image", action="append", default=[], metavar="PATTERN",
                      help="file-name part of one channel (repeat per channel, in channel order), as in 'scan'")
    pool.set_defaults(run=run_add_pool)

    label = actions.add_parser("add-label", help="store a (corrected) label for a case; a pool case moves to "
                               "training; the earlier label is kept")
    label.add_argument("dataset", type=Path, help="manifest (.json) to update")
    label.add_argument("case", help="case id")
    label.add_argument("label", type=Path, help="label map on the case's image grid")
    label.add_argument("--proposed-by", metavar="MODEL[@VERSION]", help="the model whose prediction was corrected")
    label.add_argument("--not-corrected", action="store_true",
                       help="the model's prediction was accepted as it was (not corrected by hand)")
    label.add_argument("--note", default="", help="a note kept with the label's provenance")
    label.set_defaults(run=run_add_label)


def run_scan(args: argparse.Namespace) -> int:
    from deepmed.data.scan import ScanPatterns, scan_folder

    if args.output.exists() and not args.force:
        raise DeepMedError(f"{args.output}: already exists; pass --force to overwrite it")
    patterns = ScanPatterns(images=args.image, label=args.label, contains=args.contains,
                            not_contains=args.not_contains, label_not_contains=args.label_not_contains,
                            image_not_contains=args.image_not_contains, remove_from_id=args.remove_from_id)
    dataset, warnings = scan_folder(args.folder, patterns)
    if args.channel_name:
        if len(args.channel_name) != len(dataset.channel_names):
            raise DeepMedError(f"--channel-name given {len(args.channel_name)} time(s), the scan found "
                               f"{len(dataset.channel_names)} channel(s)")
        dataset.channel_names = {str(i): n for i, n in enumerate(args.channel_name)}
    if args.name:
        dataset.name = args.name
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    dataset.save(args.output)
    print(f"{args.output}: {len(dataset.training)} training case(s) with labels, {len(dataset.test)} without; "
          f"channels: {', '.join(dataset.channel_names.values())}; labels: "
          f"{', '.join(f'{v}={k}' for k, v in dataset.labels.items()) or 'none (regression targets)'}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from deepmed.data.check import check_dataset, format_fingerprint
    from deepmed.data.manifest import Dataset, DatasetInvalid

    try:
        dataset = Dataset.load(args.dataset)
    except DatasetInvalid as exc:
        for problem in exc.problems:
            print(f"problem: {problem}")
        print(f"{args.dataset}: {len(exc.problems)} problem(s)")
        if args.report:
            write_text_atomic(args.report, json.dumps({"ok": False, "problems": exc.problems, "fingerprint": {},
                                                       "cases": [], "suggested": {}}, indent=2) + "\n")
        return 2
    report = check_dataset(dataset)
    result = {"ok": report.ok, "problems": report.problems, "fingerprint": report.fingerprint,
              "cases": _case_rows(dataset, report), "suggested": _suggested_settings(report)}
    if args.report:
        write_text_atomic(args.report, json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_fingerprint(report.fingerprint))
        for problem in report.problems:
            print(f"problem: {problem}")
        print(f"{args.dataset}: " + ("OK, no problems found" if report.ok else f"{len(report.problems)} problem(s)"))
    return 0 if report.ok else 2


def _case_rows(dataset, report) -> list[dict]:
    """Per case: its problems (lines starting 'case ID:') and, when readable, size/spacing/label voxels."""
    summaries = {summary.id: summary for summary in report.cases}
    rows = []
    for case in dataset.training + dataset.test:
        summary = summaries.get(case.id)
        rows.append({"id": case.id, "has_label": case.label is not None,
                     "problems": [p for p in report.problems if p.startswith(f"case {case.id}:")],
                     "size": list(summary.size) if summary else None,
                     "spacing": [round(s, 4) for s in summary.spacing] if summary else None,
                     "label_voxels": {str(k): v for k, v in summary.label_counts.items()} if summary else {}})
    return rows


def _suggested_settings(report) -> dict:
    """Training settings from the fingerprint by the planner's rules: target spacing and the patch that fits."""
    import numpy as np

    from deepmed.planning import dense as rules

    if not report.cases:
        return {}
    spacings = np.asarray([summary.spacing for summary in report.cases], dtype=np.float64)
    fingerprint = {"spacing": {"median": np.median(spacings, axis=0).tolist(),
                               "p10": np.percentile(spacings, 10, axis=0).tolist()},
                   "size": {"median": np.median([s.size for s in report.cases], axis=0).tolist()}}
    spacing, _ = rules.target_spacing(fingerprint)
    patch, _ = rules.patch_size(fingerprint, spacing, rules.patch_budget(0, "cpu"))
    return {"spacing": [round(float(v), 4) for v in spacing], "patch_size": [int(v) for v in patch]}


def run_split(args: argparse.Namespace) -> int:
    from deepmed.data.manifest import Dataset
    from deepmed.data.split import add_splits

    if args.folds is not None and args.fractions is not None:
        raise DeepMedError("give either --folds or --fractions, not both")
    if args.dataset.suffix.lower() != ".json":
        raise DeepMedError(f"{args.dataset}: splits are stored in a JSON manifest; "
                           "convert it with 'deepmed dataset scan'")
    dataset = Dataset.load(args.dataset)
    add_splits(dataset, folds=args.folds, fractions=tuple(args.fractions) if args.fractions else None, seed=args.seed)
    dataset.save(args.dataset)
    for index, split in enumerate(dataset.splits):
        sizes = ", ".join(f"{k} {len(v)}" for k, v in split.items())
        print(f"split {index}: {sizes}")
    return 0


def run_add_pool(args: argparse.Namespace) -> int:
    from deepmed.data.labels import add_pool, pool_cases_from_paths

    cases, warnings = pool_cases_from_paths(args.paths, args.image)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    added = add_pool(args.dataset, cases)
    skipped = len(cases) - len(added)
    print(f"{args.dataset}: {len(added)} unlabelled case(s) added to the pool"
          + (f" ({', '.join(added)})" if added else "") + (f"; {skipped} already there" if skipped else ""))
    return 0


def run_add_label(args: argparse.Namespace) -> int:
    from deepmed.data.labels import add_label
    from deepmed.data.provenance import LabelProvenance

    provenance = LabelProvenance.from_model(args.proposed_by, corrected_by_hand=not args.not_corrected,
                                            note=args.note)
    written = add_label(args.dataset, args.case, args.label, provenance)
    print(f"{args.dataset}: case {args.case} labelled with {written}")
    return 0
