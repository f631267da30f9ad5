"""Evaluate predictions against references: files, folders matched by case id, or a manifest + folder."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.data.manifest import Dataset, case_id_from_path
from deepmed.errors import DeepMedError
from deepmed.evaluation.regression_metrics import REGRESSION_COLUMNS, regression_metrics
from deepmed.evaluation.segmentation_metrics import SEGMENTATION_COLUMNS, segmentation_metrics
from deepmed.io.geometry import align_to_grid, grid_differences, same_voxel_centres
from deepmed.io.image_io import INTEGER_PIXEL_TYPES, is_image_file, read_image
from deepmed.utils.atomic import write_text_atomic
from deepmed.utils.choices import look_up

#: What is compared: label maps (overlap, distances per label) or intensities (errors per voxel).
KINDS = ("auto", "labels", "intensities")


@dataclass
class Pair:
    case: str
    reference: Path | sitk.Image
    prediction: Path | sitk.Image


def _images_by_id(folder: Path) -> dict[str, Path]:
    return {case_id_from_path(f.name): f for f in sorted(folder.iterdir()) if is_image_file(f)}


def find_pairs(reference, prediction) -> tuple[list[Pair], dict[int, str]]:
    """Match references to predictions; also return label names when a manifest provides them."""
    if isinstance(reference, sitk.Image) or isinstance(prediction, sitk.Image):
        return [Pair("case", reference, prediction)], {}
    ref, pred = Path(reference), Path(prediction)
    for p in (ref, pred):
        if not p.exists():
            raise DeepMedError(f"{p}: not found")
    if ref.is_file() and ref.suffix.lower() in (".json", ".csv"):
        dataset = Dataset.load(ref)
        if not pred.is_dir():
            raise DeepMedError(f"{pred}: with a manifest as reference, the prediction must be a folder")
        found = _images_by_id(pred)
        cases = [c for c in dataset.all_cases if c.label is not None]
        missing = [c.id for c in cases if c.id not in found]
        if len(missing) == len(cases):
            raise DeepMedError(f"{pred}: no prediction matches a case of {ref} (expected files named like "
                               f"{cases[0].id}.nii.gz)" if cases else f"{ref}: no case has a label")
        pairs = [Pair(c.id, c.label, found[c.id]) for c in cases if c.id in found]
        return pairs, {v: k for k, v in dataset.labels.items()}
    if ref.is_dir() != pred.is_dir():
        raise DeepMedError(f"{ref} and {pred}: give two files or two folders")
    if ref.is_file():
        return [Pair(case_id_from_path(ref.name), ref, pred)], {}
    refs, preds = _images_by_id(ref), _images_by_id(pred)
    common = sorted(set(refs) & set(preds))
    if not common:
        raise DeepMedError(f"{pred}: no file matches a case id in {ref} (e.g. {next(iter(refs), '?')}.nii.gz)")
    return [Pair(c, refs[c], preds[c]) for c in common], {}


def _load(item) -> sitk.Image:
    return item if isinstance(item, sitk.Image) else read_image(item)


def _on_reference_grid(pred: sitk.Image, ref: sitk.Image, case: str, resample: bool, label: bool) -> sitk.Image:
    problems = grid_differences(pred, ref)
    if not problems or same_voxel_centres(ref, pred):
        return align_to_grid(pred, ref)
    if not resample:
        raise DeepMedError(f"case {case}: prediction is not on the reference grid (prediction vs reference): "
                           f"{'; '.join(problems)}; pass --resample to resample it")
    interpolator = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    return sitk.Resample(pred, ref, sitk.Transform(), interpolator, 0.0, pred.GetPixelID())


def _detect_kind(image: sitk.Image) -> str:
    return "labels" if image.GetPixelID() in INTEGER_PIXEL_TYPES else "intensities"


def evaluate(reference, prediction, *, kind: str = "auto", labels: dict[int, str] | None = None,
             mask=None, resample: bool = False, distances: bool = True, baseline_from=None) -> list[dict]:
    """Evaluate and return one row per case and label (label maps) or per case (intensities).

    Args:
        reference: file, folder, manifest (.json/.csv) or SimpleITK image.
        prediction: file, folder (matched by case id) or SimpleITK image.
        kind: ``auto`` (integer images -> ``labels``, float -> ``intensities``), ``labels``, ``intensities``.
        labels: label value -> name; default from the manifest, else ``label_N``.
        mask: intensities only: evaluate inside this mask (file or image on the reference grid).
        resample: resample predictions that are not on the reference grid instead of failing.
        distances: compute hd, hd95 and assd (the slowest part).
        baseline_from: intensities only: lower-resolution inputs (file, or folder matched by case id) whose
            B-spline interpolation onto the reference grid is scored beside the prediction (``psnr_bspline``,
            ``ssim_bspline``, ...: the baseline of an upsampling model).
    """
    kind = look_up("kind", kind, KINDS)
    pairs, manifest_labels = find_pairs(reference, prediction)
    names = {**manifest_labels, **(labels or {})}
    rows: list[dict] = []
    for pair in pairs:
        ref = _load(pair.reference)
        case_kind = _detect_kind(ref) if kind == "auto" else kind
        pred = _on_reference_grid(_load(pair.prediction), ref, pair.case, resample, case_kind == "labels")
        ref_array = sitk.GetArrayFromImage(ref)
        pred_array = sitk.GetArrayFromImage(pred)
        spacing = tuple(reversed(ref.GetSpacing()))  # array axes are (z, y, x)
        if case_kind == "labels":
            wanted = sorted(set(v for v in names if v != 0) | (set(np.unique(ref_array).tolist())
                                                               | set(np.unique(pred_array).tolist())) - {0})
            for value, metrics in segmentation_metrics(ref_array, pred_array, spacing, wanted, distances).items():
                rows.append({"case": pair.case, "label": value, "name": names.get(value, f"label_{value}"), **metrics})
        else:
            mask_array = None
            if mask is not None:
                mask_image = _on_reference_grid(_load(mask), ref, pair.case, resample, True)
                mask_array = sitk.GetArrayFromImage(mask_image) > 0
            row = {"case": pair.case, **regression_metrics(ref_array, pred_array, mask_array)}
            if baseline_from is not None:
                row.update(_bspline_baseline(baseline_from, pair.case, ref, ref_array, mask_array))
            rows.append(row)
    return rows


def _bspline_baseline(source, case: str, ref: sitk.Image, ref_array: np.ndarray, mask) -> dict[str, float]:
    """The regression metrics of ``source`` (a file, or a folder's file for ``case``) B-spline-interpolated
    onto the reference grid, each named ``<metric>_bspline``."""
    path = Path(source)
    if path.is_dir():
        found = _images_by_id(path)
        if case not in found:
            raise DeepMedError(f"{path}: no input for case {case} (expected a file named like {case}.nii.gz)")
        path = found[case]
    low = sitk.Cast(_load(path), sitk.sitkFloat32)
    spline = sitk.Resample(low, ref, sitk.Transform(), sitk.sitkBSpline, 0.0, sitk.sitkFloat32, True)
    metrics = regression_metrics(ref_array, sitk.GetArrayFromImage(spline), mask)
    return {f"{name}_bspline": value for name, value in metrics.items()}


def columns_for(rows: list[dict]) -> tuple[str, ...]:
    if rows and "dice" in rows[0]:
        return SEGMENTATION_COLUMNS
    baseline = tuple(f"{c}_bspline" for c in REGRESSION_COLUMNS[1:]) if rows and "psnr_bspline" in rows[0] else ()
    return REGRESSION_COLUMNS + baseline


def rows_to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns_for(rows), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def write_csv(rows: list[dict], path: str | os.PathLike) -> Path:
    return write_text_atomic(path, rows_to_csv(rows))


def rows_to_json(rows: list[dict]) -> str:
    """JSON list of rows; non-finite numbers become the strings "inf", "-inf", "nan" (valid JSON)."""
    clean = [{k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]
    return json.dumps(clean, indent=2)


def summarize(rows: list[dict]) -> list[dict]:
    """Mean, median and std of each metric per label (non-finite values left out and counted)."""
    columns = [c for c in columns_for(rows) if c not in ("case", "label", "name") and all(c in r for r in rows)]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row.get("label", ""), row.get("name", "all")), []).append(row)
    summary = []
    for (label, name), group in groups.items():
        entry: dict = {"label": label, "name": name, "cases": len(group)}
        for column in columns:
            values = np.array([r[column] for r in group], dtype=np.float64)
            finite = values[np.isfinite(values)]
            entry[column] = {"mean": float(finite.mean()) if finite.size else float("nan"),
                             "median": float(np.median(finite)) if finite.size else float("nan"),
                             "std": float(finite.std()) if finite.size else float("nan"),
                             "non_finite": int(values.size - finite.size)}
        summary.append(entry)
    return summary


SUMMARY_COLUMNS = {"labels": ("dice", "jaccard", "hd95", "assd", "rel_volume_diff"),
                   "intensities": ("mae", "me", "rmse", "psnr", "ssim")}


def format_summary(rows: list[dict]) -> str:
    """A table for people: mean / median / std per label."""
    if not rows:
        return "no cases evaluated"
    kind = "labels" if "dice" in rows[0] else "intensities"
    shown = SUMMARY_COLUMNS[kind] + (("psnr_bspline", "ssim_bspline") if "psnr_bspline" in rows[0] else ())
    shown = tuple(c for c in shown if c in rows[0])  # --no-distances: no hd95, assd
    header = f"{'label':<22}{'cases':>6}" + "".join(f"{c + ' mean/med/std':>31}" for c in shown)
    lines = [header, "-" * len(header)]
    for entry in summarize(rows):
        title = f"{entry['label']} {entry['name']}".strip()
        cells = []
        for c in shown:
            s = entry[c]
            flag = f" ({s['non_finite']} inf)" if s["non_finite"] else ""
            cells.append(f"{s['mean']:.3f}/{s['median']:.3f}/{s['std']:.3f}{flag}".rjust(31))
        lines.append(f"{title[:21]:<22}{entry['cases']:>6}" + "".join(cells))
    return "\n".join(lines)
