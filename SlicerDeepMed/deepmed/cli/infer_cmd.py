"""``deepmed infer --model MODEL_DIR INPUT [INPUT2 ...] -o OUTPUT`` (or a folder / manifest for batch)."""

from __future__ import annotations

import argparse
import sys
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
    parser.add_argument("--clicks", type=Path, help="interactive models: a clicks JSON file ({\"coordinates\": "
                        "\"RAS\" or \"LPS\", \"clicks\": [{\"point\": [x, y, z], \"label\": name, \"positive\": "
                        "true}]}); the label is refined around the clicks")
    parser.add_argument("--previous", type=Path, help="interactive models: the label map to refine (on the input's "
                        "grid); outside the refined region it is kept")
    parser.add_argument("--label", help="interactive models: the label to refine (default: the clicks' label)")
    parser.add_argument("--progress", default="tqdm", choices=["tqdm", "jsonl", "none"])
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from deepmed.inference.batch import CaseJob, ExtraOutputs
    from deepmed.inference.predictor import Predictor
    from deepmed.progress import make_reporter
    from deepmed.utils.tables import format_value
    from deepmed.zoo.library import resolve_model

    batch = len(args.inputs) == 1 and ((args.inputs[0].is_dir() and not _is_dicom(args.inputs[0]))
                                       or args.inputs[0].suffix.lower() in (".json", ".csv"))
    if args.clicks is not None or args.previous is not None or args.label is not None:
        if batch:
            raise DeepMedError(f"{args.inputs[0]}: --clicks / --previous / --label refine one case; give its image "
                               "file(s), not a folder or manifest")
        return _refine(args)
    options = _options(args)
    dist, device = _ranks(args) if batch else (None, args.device)
    predictor = Predictor(resolve_model(args.model), device, expected_app=args.app,
                          folds=_parse_folds(args.folds) if args.folds else None)
    reporter = make_reporter(args.progress if dist is None or dist.is_main else "none")
    if batch:
        try:
            result = predictor.predict_many(args.inputs[0], options, output=args.output, force=args.force,
                                            extras=ExtraOutputs(args.probabilities, args.uncertainty),
                                            emit=reporter.emit, dist=dist)
        finally:
            if dist is not None:
                dist.close()
    else:
        job = CaseJob("case", tuple(args.inputs), args.output)
        result = predictor.predict_many([job], options, force=args.force, keep_going=False, emit=reporter.emit,
                                        extras=ExtraOutputs(args.probabilities, args.uncertainty, files=True))
    reporter.close()
    if dist is not None and not dist.is_main:
        return 0  # rank 0 reports for all
    for outcome in result.skipped:
        print(f"deepmed: skipped {outcome.case_id}: {outcome.skipped}", file=sys.stderr)
    if not batch and result.outcomes[0].values:
        print("\n".join(f"{key}: {format_value(value)}" for key, value in result.outcomes[0].values.items()))
    if args.progress == "tqdm":
        note = f", {len(result.skipped)} skipped" if result.skipped else ""
        summary = f"written {len(result.done)} of {len(result.outcomes)} case(s) to {args.output}{note}"
        print(summary if batch else f"written {args.output}", file=sys.stderr)
    return 0


def _refine(args: argparse.Namespace) -> int:
    """One case refined by clicks (and/or a previous mask): an interactive model's ``refine`` mode."""
    from deepmed.inference.predictor import Predictor
    from deepmed.interactive.clicks import ClickSet, read_clicks
    from deepmed.zoo.library import resolve_model

    if args.output.exists() and not args.force:
        raise DeepMedError(f"{args.output}: exists (use --force to overwrite)")
    clicks = read_clicks(args.clicks) if args.clicks is not None else ClickSet()
    predictor = Predictor(resolve_model(args.model), args.device, expected_app=args.app)
    if "refine" not in {mode.name for mode in predictor.modes}:
        raise DeepMedError(f"{args.model}: --clicks needs an interactive model (its card has no 'refine' mode; "
                           f"modes: {', '.join(m.name for m in predictor.modes)})")
    for path in (*args.inputs, *([args.previous] if args.previous is not None else [])):
        if not path.exists():
            raise DeepMedError(f"{path}: not found")
    prediction = predictor.predict(list(args.inputs), mode="refine", clicks=clicks, previous=args.previous,
                                   label=args.label)
    predictor.write(prediction, args.output)
    if args.progress == "tqdm":
        print(f"written {args.output}", file=sys.stderr)
    return 0


def _ranks(args: argparse.Namespace):
    """Under torchrun (WORLD_SIZE > 1) a batch is shared across the ranks: the process group and this rank's
    device (its LOCAL_RANK's GPU); a single process: (None, the device asked for)."""
    from deepmed.distributed import init_distributed
    from deepmed.model.device import pick_device

    kind = pick_device(args.device).type
    dist = init_distributed(kind)
    if dist is None:
        return None, args.device
    return dist, f"cuda:{dist.local_rank}" if kind == "cuda" else kind


def _options(args: argparse.Namespace):
    from deepmed.inference.options import InferenceOptions

    condition = _parse_condition(args.condition) if args.condition else None
    return InferenceOptions(tta_flips=args.tta, overlap=args.overlap, keep_largest=args.keep_largest,
                            mode=args.mode, condition=condition, steps=args.steps, count=args.count, seed=args.seed)


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


def _is_dicom(path: Path) -> bool:
    from deepmed.data.scan import _looks_like_dicom_folder

    return path.is_dir() and _looks_like_dicom_folder(path)
