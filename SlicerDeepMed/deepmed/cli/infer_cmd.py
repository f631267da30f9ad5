"""``deepmed infer --model MODEL_DIR INPUT [INPUT2 ...] -o OUTPUT`` (or a folder / manifest for batch)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from deepmed.errors import DeepMedError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("infer", help="segment / predict images with a trained model")
    parser.add_argument("--model", required=True, help="model directory, or the id of a model in the library")
    parser.add_argument("inputs", nargs="*", type=Path,
                        help="one file per channel; or one folder / manifest for batch inference; two cases' files "
                             "for a pair mode; none for a generator")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output file (or folder for batch)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--app", help="refuse models of another application (segmentation / regression)")
    parser.add_argument("--folds", help="of a cross-validation ensemble, the folds to average, e.g. 0,2 "
                                           "(default: all; one fold is faster)")
    parser.add_argument("--tta", action="store_true", default=None, help="flip test-time augmentation")
    parser.add_argument("--no-tta", dest="tta", action="store_false",
                        help="no flips even where the model card asks for them (nnU-Net models mirror by default)")
    parser.add_argument("--overlap", type=float, help="sliding-window overlap in [0, 1)")
    parser.add_argument("--keep-largest", action="store_true", default=None,
                        help="keep the largest connected component per label")
    parser.add_argument("--probabilities", type=Path, help="also write class probabilities (vector image)")
    parser.add_argument("--uncertainty", type=Path, help="also write the normalised entropy map")
    parser.add_argument("--mode", help="what to ask the model for, from its card's modes (deepmed zoo info)")
    parser.add_argument("--condition", help="condition values for a conditional generator, e.g. 0.3,1.2")
    parser.add_argument("--steps", type=int, help="number of images of an interpolation")
    parser.add_argument("--count", type=int, help="number of samples to draw")
    parser.add_argument("--seed", type=int, help="random seed of sampling / generation")
    parser.add_argument("--progress", default="tqdm", choices=["tqdm", "jsonl", "none"])
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.set_defaults(run=run)


def _batch_jobs(args, suffix: str) -> list[tuple[str, list[Path], Path]]:
    from deepmed.data.manifest import Dataset, case_id_from_path
    from deepmed.io.image_io import is_image_file

    source = args.inputs[0]
    if source.is_dir() and not (source / "dataset.json").exists() and not (source / "imagesTr").exists():
        files = [f for f in sorted(source.iterdir()) if is_image_file(f)]
        cases = [(case_id_from_path(f.name), [f]) for f in files]
    else:
        dataset = Dataset.load(source)
        cases = [(c.id, c.images) for c in dataset.test or dataset.training]
    if not cases:
        raise DeepMedError(f"{source}: no images to process")
    if args.output.exists() and not args.output.is_dir():
        raise DeepMedError(f"{args.output}: batch output must be a folder")
    if not args.output.parent.is_dir():
        raise DeepMedError(f"{args.output}: output folder {args.output.parent} does not exist")
    args.output.mkdir(exist_ok=True)
    return [(cid, imgs, args.output / f"{cid}{suffix}") for cid, imgs in cases]


def run(args: argparse.Namespace) -> int:
    from deepmed.inference.predictor import Predictor
    from deepmed.io.image_io import write_image
    from deepmed.progress import make_reporter
    from deepmed.utils.atomic import check_output_folder
    from deepmed.utils.tables import format_value
    from deepmed.zoo.library import resolve_model

    batch = len(args.inputs) == 1 and ((args.inputs[0].is_dir() and not _is_dicom(args.inputs[0]))
                                       or args.inputs[0].suffix.lower() in (".json", ".csv"))
    folds = _parse_folds(args.folds) if args.folds else None
    condition = _parse_condition(args.condition) if args.condition else None
    predictor = Predictor(resolve_model(args.model), args.device, expected_app=args.app, folds=folds)
    predictor.mode(args.mode)  # an unknown mode is refused before any work
    jobs = _batch_jobs(args, predictor.app.output_suffix) if batch else [("case", args.inputs, args.output)]
    for _, _, output in jobs:
        check_output_folder(output)
        if output.exists() and not args.force:
            raise DeepMedError(f"{output}: already exists; pass --force to overwrite it")
    reporter = make_reporter(args.progress)
    skipped, rows = [], []
    for index, (case_id, inputs, output) in enumerate(jobs):
        started = time.perf_counter()
        try:
            result = predictor.predict(inputs, tta_flips=args.tta, overlap=args.overlap,
                                       keep_largest=args.keep_largest,
                                       probabilities=bool(args.probabilities or args.uncertainty),
                                       mode=args.mode, condition=condition, steps=args.steps, count=args.count,
                                       seed=args.seed)
        except DeepMedError as exc:
            if not batch:
                raise
            skipped.append(f"{case_id}: {exc}")  # one unreadable case does not end a batch
            reporter.emit("inference", case=case_id, index=index, total=len(jobs), output=None, skipped=str(exc),
                          seconds=round(time.perf_counter() - started, 2))
            continue
        predictor.write(result, output)
        if result.values:
            rows.append({"case": case_id, **result.values})
            if not batch:
                print("\n".join(f"{key}: {format_value(value)}" for key, value in result.values.items()))
        if args.probabilities and result.probabilities is not None:
            write_image(result.probabilities, _extra_path(args.probabilities, case_id, batch))
        if args.uncertainty and result.uncertainty is not None:
            write_image(result.uncertainty, _extra_path(args.uncertainty, case_id, batch))
        reporter.emit("inference", case=case_id, index=index, total=len(jobs), output=str(output),
                      seconds=round(time.perf_counter() - started, 2))
    reporter.close()
    if batch and rows:
        _write_table(rows, args.output / "results.csv")
    for note in skipped:
        print(f"deepmed: skipped {note}", file=sys.stderr)
    if skipped and len(skipped) == len(jobs):
        raise DeepMedError(f"no case could be processed ({len(jobs)} skipped)")
    if args.progress == "tqdm":
        done = len(jobs) - len(skipped)
        note = f", {len(skipped)} skipped" if skipped else ""
        summary = f"written {done} of {len(jobs)} case(s) to {args.output}{note}"
        print(f"written {args.output}" if not batch else summary, file=sys.stderr)
    return 0


def _parse_folds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DeepMedError(f"--folds: expected fold numbers like 0,2, got {text!r}") from None


def _parse_condition(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DeepMedError(f"--condition: expected numbers like 0.3,1.2, got {text!r}") from None


def _write_table(rows: list[dict], path: Path) -> Path:
    """One row per case (the case-level results of a batch), written atomically."""
    from deepmed.utils.atomic import write_text_atomic
    from deepmed.utils.tables import rows_to_csv

    return write_text_atomic(path, rows_to_csv(rows))


def _is_dicom(path: Path) -> bool:
    from deepmed.data.scan import _looks_like_dicom_folder

    return path.is_dir() and _looks_like_dicom_folder(path)


def _extra_path(base: Path, case_id: str, batch: bool) -> Path:
    if not batch:
        return base
    base.mkdir(exist_ok=True)
    return base / f"{case_id}.nii.gz"
