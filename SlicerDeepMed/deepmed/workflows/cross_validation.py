"""``deepmed train --folds 5``: every fold of the manifest's splits, their out-of-fold evaluation, the
post-processing that the out-of-fold results choose, and one ensemble model of all folds.

    MODEL_DIR/
      model_card.json, model.safetensors   the ensemble: every fold's weights (``fold_<k>.`` prefixes)
      fold_<k>/                             each fold's own model directory (curves, checkpoints, ...)
      cross_validation/                     predictions/, evaluation.csv, summary.json, report.png
      splits.json                           the folds used (nnU-Net's splits_final.json format)

All folds share one plan, made on all training cases, so that their predictions can be averaged. A manifest
without ``splits`` gets folds made once (seeded by ``training.seed``) and saved beside it as
``<manifest>.splits.json``; later runs reuse that file, and the manifest itself is never rewritten.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.data.manifest import Dataset
from deepmed.data.split import cross_validation_splits
from deepmed.errors import DeepMedError
from deepmed.evaluation.evaluate import evaluate, format_summary, summarize, write_csv
from deepmed.inference.predictor import Predictor
from deepmed.io.geometry import align_to_grid
from deepmed.io.image_io import read_image
from deepmed.model.card import ModelCard
from deepmed.model.card_calibration import ensemble_calibration
from deepmed.model.device import pick_device
from deepmed.model.directory import CONFIG, WEIGHTS, read_card, write_card
from deepmed.model.weights import ensemble_weights, load_weights, save_weights
from deepmed.planning.plan import PLAN_FILE, Plan
from deepmed.planning.settings import TrainingSettings
from deepmed.training.driver import train
from deepmed.training.prepare import prepare_run, run_config
from deepmed.training.request import TrainRequest
from deepmed.utils.atomic import write_text_atomic
from deepmed.volume_inference.ongrid import keep_largest_component

SPLITS_FILE = "splits.json"  # the folds this cross-validation used (nnU-Net's splits_final.json format)


def parse_folds(text, available: int) -> list[int]:
    """``all``, a count (``5``: folds 0-4) or a list (``0,2``) -> fold numbers, checked against the splits."""
    text = str(text).strip().lower()
    if text == "all":
        return list(range(available))
    if "," not in text and text.isdigit():
        count = int(text)
        if count != available:
            raise DeepMedError(f"--folds {count}: the manifest has {available} split(s); pass --folds all, or "
                               f"re-split with 'deepmed dataset split DATASET --folds {count}'")
        return list(range(count))
    try:
        folds = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise DeepMedError(f"--folds: expected all, a number of folds or a list like 0,2; got {text!r}") from None
    missing = [f for f in folds if not 0 <= f < available]
    if missing or not folds:
        raise DeepMedError(f"--folds: the manifest has folds 0-{available - 1}, got {text}")
    return folds


def train_folds(dataset, out=None, folds="all", **options) -> Path:
    """Train ``folds`` (of the manifest's splits) into ``out/fold_<k>``, then evaluate and ensemble them.

    ``train_folds(TrainRequest(...), folds=...)``, or ``train_folds(dataset, out, folds, app=..., ...)`` with
    the fields of ``TrainRequest`` as keywords. Its ``time_limit`` is per fold; its ``init`` (fine-tuning)
    starts every fold from the same model.
    """
    if isinstance(dataset, TrainRequest) and (out is not None or options):
        raise TypeError("train_folds(request, folds=...): the request holds the output and the options")
    request = dataset if isinstance(dataset, TrainRequest) else TrainRequest(dataset=dataset, out=out, **options)
    out = request.out
    dataset = request.dataset if isinstance(request.dataset, Dataset) else Dataset.load(request.dataset)
    if out.exists() and any(out.iterdir()):
        raise DeepMedError(f"{out}: already exists and is not empty; choose another --out")
    settings = {key: value for key, value in (("app", request.app), ("training.device", request.device))
                if value is not None}
    cfg = run_config(request.config, request.overrides, settings)
    if not dataset.splits:
        made = cross_validation_splits(dataset, fold_count(folds), TrainingSettings.from_config(cfg).seed)
        dataset.splits = made.splits
        print(made.note(), file=sys.stderr)
    chosen = parse_folds(folds, len(dataset.splits))
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / SPLITS_FILE, json.dumps(dataset.splits, indent=2) + "\n")
    shared = shared_plan(dataset, cfg)
    for fold in chosen:  # the time limit is per fold: each counts from its own start
        train(replace(request, dataset=dataset, out=out / f"fold_{fold}", fold=fold, shared_plan=shared,
                      started_at=time.time()))
    return finish_cross_validation(dataset, out, chosen, request.device or "auto")


def fold_count(text) -> int | None:
    """The number of folds ``--folds`` asks for (``5``), or None (``all``, ``0,2``: whatever the splits hold)."""
    text = str(text).strip()
    return int(text) if text.isdigit() else None


def shared_plan(dataset: Dataset, cfg: dict) -> Plan:
    """One plan for every fold, made on all training cases (``cfg``: the resolved configuration)."""
    return prepare_run(dataset, cfg, pick_device(TrainingSettings.from_config(cfg).device).type, all_cases=True).plan


def finish_cross_validation(dataset: Dataset, out: Path, folds: list[int], device: str) -> Path:
    """Out-of-fold predictions and evaluation, post-processing chosen by them, and the ensemble model."""
    report = out / "cross_validation"
    predictions = report / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    by_id = {case.id: case for case in dataset.training}
    rows, cases = [], []
    for fold in folds:
        predictor = Predictor(out / f"fold_{fold}", device)
        for case_id in dataset.splits[fold].get("val", []):
            case = by_id[case_id]
            result = predictor.predict(case.images, keep_largest=False)
            path = predictor.write(result, predictions / f"{case_id}{predictor.app.output_suffix}")
            cases.append((case, path))
    pairs = _labelled_pairs(cases) if predictor.output_kind in ("label_map", "scalar_volume") else []
    if pairs:
        rows = _evaluate(pairs, dataset)
        write_csv(rows, report / "evaluation.csv")
    postprocessing = choose_keep_largest(pairs, dataset) if predictor.output_kind == "label_map" else {}
    card = _ensemble_card(out, folds, rows, postprocessing)
    write_text_atomic(report / "summary.json", json.dumps({"folds": folds, "summary": summarize(rows) if rows else [],
                                                           "postprocessing": postprocessing}, indent=2,
                                                          default=str) + "\n")
    if rows:
        write_report_png(rows, report / "report.png")
        write_text_atomic(report / "summary.txt", format_summary(rows) + "\n")
    save_weights(ensemble_weights({fold: load_weights(out / f"fold_{fold}" / WEIGHTS) for fold in folds}),
                 out / WEIGHTS)
    for name in (CONFIG, PLAN_FILE):
        if (out / f"fold_{folds[0]}" / name).is_file():
            shutil.copy2(out / f"fold_{folds[0]}" / name, out / name)
    write_card(out, card)
    return out


def _labelled_pairs(cases) -> list[tuple]:
    """(case id, reference, prediction) read once; the reference on the prediction's grid (the input's)."""
    pairs = []
    for case, path in cases:
        if case.label is not None:
            prediction = read_image(path)
            pairs.append((case.id, align_to_grid(read_image(case.label), prediction), prediction))
    return pairs


def _evaluate(pairs, dataset: Dataset) -> list[dict]:
    rows = []
    for case_id, reference, prediction in pairs:
        for row in evaluate(reference, prediction, labels=dataset.label_names, distances=True):
            rows.append({**row, "case": case_id})
    return rows


def choose_keep_largest(pairs, dataset: Dataset) -> dict:
    """nnU-Net's rule, per label: keep only the largest component where that raises the out-of-fold Dice."""
    chosen, gains = [], {}
    references = [(sitk.GetArrayViewFromImage(ref), sitk.GetArrayFromImage(pred)) for _, ref, pred in pairs]
    for name, value in sorted(dataset.labels.items(), key=lambda item: item[1]):
        if value == 0:
            continue
        before = [_dice(ref == value, pred == value) for ref, pred in references]
        after = [_dice(ref == value, keep_largest_component(pred, [value]) == value) for ref, pred in references]
        gains[name] = float(np.mean(after) - np.mean(before))
        if gains[name] > 0:
            chosen.append(value)
    return {"keep_largest": chosen, "dice_gain": gains}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _ensemble_card(out: Path, folds: list[int], rows: list[dict], postprocessing: dict) -> ModelCard:
    card = read_card(out / f"fold_{folds[0]}")
    fold_cards = {fold: read_card(out / f"fold_{fold}") for fold in folds}
    fold_inputs = {str(fold): fold_card.inputs for fold, fold_card in fold_cards.items()}
    keep_largest = postprocessing.get("keep_largest")
    summary = {}
    for entry in summarize(rows) if rows else []:
        key = entry.get("name") or "all"
        metric = "dice" if "dice" in entry else "mae"
        summary[key] = {"mean": entry[metric]["mean"], "std": entry[metric]["std"], "cases": entry["cases"]}
    return card.with_values(
        folds=tuple(folds), fold_inputs=fold_inputs,
        calibration=ensemble_calibration({fold: fold_card.calibration for fold, fold_card in fold_cards.items()}),
        postprocessing={"keep_largest": keep_largest} if keep_largest is not None else card.postprocessing,
        cross_validation={"folds": len(folds), "out_of_fold": summary},
        validation={"key_metric": card.validation.get("key_metric"), "out_of_fold": summary})


def write_report_png(rows: list[dict], path: Path) -> Path:
    """Box plot of the out-of-fold Dice (or MAE) per label: a picture rather than numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "dice" if "dice" in rows[0] else "mae"
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(str(row.get("name", "all")), []).append(float(row[metric]))
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(groups), 3.4))
    ax.boxplot(list(groups.values()), showmeans=True)
    ax.set_xticks(range(1, len(groups) + 1), list(groups))
    ax.set(title=f"out-of-fold {metric} ({len({r['case'] for r in rows})} cases)", ylabel=metric)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
