"""Validate every case of a dataset and compute its fingerprint (sizes, spacings, intensities, labels).

Every problem is reported, one line each, naming the case, the file and what was expected vs. found.
The fingerprint also feeds the training defaults (target spacing, patch size, normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from deepmed.data.manifest import Case, Dataset
from deepmed.errors import DeepMedError
from deepmed.io.geometry import align_to_grid, grid_differences, same_voxel_centres
from deepmed.io.image_io import read_channels, read_image
from deepmed.io.nifti_finite import count_nonfinite_nifti, is_nifti

SAMPLES_PER_CASE = 20000
PERCENTILES = (0.5, 50.0, 99.5)


@dataclass
class CaseSummary:
    id: str
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    channels: int
    label_counts: dict[int, int] = field(default_factory=dict)


@dataclass
class CheckReport:
    """Outcome of ``check_dataset``: problems (one line each) and the dataset fingerprint."""

    problems: list[str]
    fingerprint: dict
    cases: list[CaseSummary]

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_case(case: Case, dataset: Dataset, where: str, problems: list[str], rng: np.random.Generator,
                samples: dict[int, list[np.ndarray]], fg_samples: dict[int, list[np.ndarray]]) -> CaseSummary | None:
    start = len(problems)
    try:
        channels = read_channels(case.images)
    except DeepMedError as exc:
        problems.append(f"case {case.id}: {exc}")
        return None
    names = ", ".join(p.name for p in case.images)
    expected_channels = len(dataset.channel_names)
    if expected_channels and len(channels) != expected_channels:
        problems.append(f"case {case.id}: {names}: expected {expected_channels} channel(s) "
                        f"({', '.join(dataset.channel_names.values())}), found {len(channels)}")
    for index, channel in enumerate(channels):
        if channel.GetDimension() != 3:
            problems.append(f"case {case.id}: {names}: channel {index}: expected a 3D image, found "
                            f"{channel.GetDimension()}D of size {channel.GetSize()}")
            break
    if len(problems) > start:
        return None
    reference = channels[0]
    for index, channel in enumerate(channels[1:], start=1):
        diff = grid_differences(channel, reference)
        if diff:
            problems.append(f"case {case.id}: {case.images[min(index, len(case.images) - 1)].name}: channel {index} "
                            f"is not on the grid of channel 0: {'; '.join(diff)}")
    arrays = [sitk.GetArrayViewFromImage(c) for c in channels]
    for index, array in enumerate(arrays):
        bad = int(array.size - np.count_nonzero(np.isfinite(array))) if array.dtype.kind == "f" else 0
        if bad:
            name = case.images[min(index, len(case.images) - 1)].name
            problems.append(f"case {case.id}: {name}: {bad} NaN/Inf voxel(s)")
    for path in case.images:  # ITK reads NaN/Inf in NIfTI as 0: count them in the stored data
        bad = count_nonfinite_nifti(path) if is_nifti(path) else 0
        if bad:
            problems.append(f"case {case.id}: {path.name}: {bad} NaN/Inf voxel(s)")
    summary = CaseSummary(case.id, tuple(reference.GetSize()), tuple(reference.GetSpacing()), len(channels))
    label_array = None
    if case.label is not None:
        label_array = _check_label(case, dataset, reference, where, problems, summary)
    for index, array in enumerate(arrays):
        flat = array.reshape(-1)
        take = rng.choice(flat.size, size=min(SAMPLES_PER_CASE, flat.size), replace=False)
        samples.setdefault(index, []).append(np.asarray(flat[take], dtype=np.float64))
        if label_array is not None and label_array.shape == array.shape and dataset.labels:
            fg = np.asarray(array[label_array > 0], dtype=np.float64)
            if fg.size:
                fg_samples.setdefault(index, []).append(fg[rng.choice(fg.size, size=min(SAMPLES_PER_CASE, fg.size),
                                                                      replace=False)])
    return summary


def _check_label(case: Case, dataset: Dataset, reference: sitk.Image, where: str, problems: list[str],
                 summary: CaseSummary) -> np.ndarray | None:
    try:
        label = read_image(case.label)
    except DeepMedError as exc:
        problems.append(f"case {case.id}: {exc}")
        return None
    if label.GetNumberOfComponentsPerPixel() != 1 or label.GetDimension() != 3:
        problems.append(f"case {case.id}: {case.label.name}: expected a 3D single-component label, found "
                        f"{label.GetDimension()}D with {label.GetNumberOfComponentsPerPixel()} component(s)")
        return None
    diff = grid_differences(label, reference)
    if diff and same_voxel_centres(reference, label):
        label, diff = align_to_grid(label, reference), []  # same voxels stored in another axis order
    if diff:
        problems.append(f"case {case.id}: {case.label.name}: label is not on the image grid (label vs image): "
                        f"{'; '.join(diff)}")
    array = sitk.GetArrayFromImage(label)
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    bad += count_nonfinite_nifti(case.label) if is_nifti(case.label) else 0  # read as 0 by ITK
    if bad:
        problems.append(f"case {case.id}: {case.label.name}: {bad} NaN/Inf voxel(s) in the label")
        return None
    if dataset.labels:
        values, counts = np.unique(array, return_counts=True)
        summary.label_counts = {int(v): int(n) for v, n in zip(values, counts)}
        undeclared = sorted(set(int(v) for v in values) - set(dataset.labels.values()))
        if undeclared or np.any(values != np.round(values)):
            problems.append(f"case {case.id}: {case.label.name}: label values {undeclared} not declared in 'labels' "
                            f"(declared: {sorted(dataset.labels.values())})")
    return array if not diff else None


def _stats(parts: list[np.ndarray]) -> dict:
    if not parts:
        return {}
    values = np.concatenate(parts)
    p = np.percentile(values, PERCENTILES)
    return {"mean": float(values.mean()), "std": float(values.std()), "p0_5": float(p[0]), "p50": float(p[1]),
            "p99_5": float(p[2])}


def _spread(rows: list[tuple]) -> dict:
    array = np.asarray(rows, dtype=np.float64)
    return {"median": np.median(array, axis=0).tolist(), "min": array.min(axis=0).tolist(),
            "max": array.max(axis=0).tolist()}


def check_dataset(dataset: Dataset, *, seed: int = 0, include_test: bool = True) -> CheckReport:
    """Read every case, collect every problem and compute the fingerprint."""
    where = str(dataset.source or dataset.name)
    problems: list[str] = []
    rng = np.random.default_rng(seed)
    samples: dict[int, list[np.ndarray]] = {}
    fg_samples: dict[int, list[np.ndarray]] = {}
    cases = dataset.training + (dataset.test if include_test else [])
    if not cases:
        problems.append(f"{where}: dataset is empty: no cases")
    summaries = []
    for case in cases:
        summary = _check_case(case, dataset, where, problems, rng, samples, fg_samples)
        if summary is not None:
            summaries.append(summary)
    fingerprint: dict = {"name": dataset.name, "cases": len(cases), "training_cases": len(dataset.training),
                         "readable_cases": len(summaries)}
    if summaries:
        fingerprint["channels"] = summaries[0].channels
        fingerprint["size"] = _spread([s.size for s in summaries])
        fingerprint["spacing"] = _spread([s.spacing for s in summaries])
        names = dataset.channel_names or {"0": "image"}
        fingerprint["intensity"] = {names.get(str(i), f"channel_{i}"): {"all": _stats(samples.get(i, [])),
                                                                        "foreground": _stats(fg_samples.get(i, []))}
                                    for i in sorted(samples)}
        if dataset.labels:
            totals: dict[str, int] = {name: 0 for name in dataset.labels}
            names_by_value = dataset.label_names
            for s in summaries:
                for value, count in s.label_counts.items():
                    if value in names_by_value:
                        totals[names_by_value[value]] += count
            fingerprint["label_voxels"] = totals
    return CheckReport(problems, fingerprint, summaries)


def format_fingerprint(fp: dict) -> str:
    """The fingerprint as a short human-readable block."""
    lines = [f"dataset {fp['name']}: {fp['cases']} case(s) ({fp['training_cases']} training), "
             f"{fp['readable_cases']} readable"]
    if "size" in fp:
        fmt = lambda v: " x ".join(f"{x:g}" for x in v)  # noqa: E731
        lines.append(f"  channels: {fp['channels']}")
        for key, unit in (("size", "voxels"), ("spacing", "mm")):
            s = fp[key]
            lines.append(f"  {key:8s} median {fmt(s['median'])} {unit}   min {fmt(s['min'])}   max {fmt(s['max'])}")
        for name, stats in fp["intensity"].items():
            a = stats["all"]
            lines.append(f"  intensity [{name}]: p0.5 {a['p0_5']:.4g}  median {a['p50']:.4g}  p99.5 {a['p99_5']:.4g}"
                         f"  mean {a['mean']:.4g}  std {a['std']:.4g}")
            if stats["foreground"]:
                f = stats["foreground"]
                lines.append(f"  intensity [{name}] in labels: p0.5 {f['p0_5']:.4g}  median {f['p50']:.4g}  "
                             f"p99.5 {f['p99_5']:.4g}")
        if "label_voxels" in fp:
            lines.append("  label voxels: " + ", ".join(f"{k} {v}" for k, v in fp["label_voxels"].items()))
    return "\n".join(lines)
