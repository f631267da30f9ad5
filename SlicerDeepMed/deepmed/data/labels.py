"""Unlabelled cases (the manifest's ``pool``) and corrected labels, saved so that no label is ever lost.

``add_label`` stores a (corrected) label for a case beside the data, in ``labels/`` next to the manifest.
Every label version is a file of its own (``labels/CASE_label.v1.nii.gz``, ``.v2`` ...), written once and
never overwritten; the manifest names the current one and lists the earlier ones in the case's
``provenance.history``. The manifest is the one commit point: the new label file is complete on disk
(temporary file, then rename) before the manifest (also temporary file, then rename) names it, so a crash
at any moment leaves the case with either its old label or its new one.

The manifest is edited as JSON, so keys DeepMed does not use (``file_ending``, ``reference``, ...) and the
paths' spelling are kept; only the case's entry (and ``numTraining``, ``splits``) changes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.data.manifest import Case, Dataset, case_id_from_path, parse_manifest
from deepmed.data.provenance import EarlierLabel, LabelProvenance, LabelRecord, relative, utc_now
from deepmed.errors import DeepMedError
from deepmed.io.geometry import align_to_grid, grid_differences
from deepmed.io.image_io import read_channels, read_image, write_image
from deepmed.utils.atomic import write_text_atomic
from deepmed.utils.json_files import read_json_object

LABELS_FOLDER = "labels"
LABEL_SUFFIX = ".nii.gz"
SECTIONS = ("training", "test", "pool")


def add_label(manifest: str | os.PathLike, case_id: str, label: str | os.PathLike | sitk.Image,
              provenance: LabelProvenance | None = None, *,
              on_step: Callable[[str], None] | None = None) -> Path:
    """Store ``label`` as the label of ``case_id``: a pool case moves to ``training``, a training or test case
    gets its label replaced (the earlier one is kept). Returns the new label file.

    ``label`` is a file or an image on the case's grid (channel 0's size, spacing, origin, direction), with
    values among the manifest's ``labels``. ``on_step`` (tests) is called with ``"label_written"`` and
    ``"manifest_written"`` after each of the two writes.

    Raises:
        DeepMedError: one line naming the file or key and what is wrong; nothing is written then.
    """
    manifest = Path(manifest)
    raw, dataset = _editable_manifest(manifest)
    case = dataset.case(case_id)
    where = str(label) if not isinstance(label, sitk.Image) else f"label for case {case_id}"
    image = _label_on_case_grid(label if isinstance(label, sitk.Image) else read_image(label), where, case, dataset)
    folder = manifest.parent / LABELS_FOLDER
    folder.mkdir(exist_ok=True)
    target = folder / f"{_file_stem(case.id)}_label.v{_next_version(folder, case.id)}{LABEL_SUFFIX}"
    write_image(image, target, label=bool(dataset.labels))
    _step(on_step, "label_written")
    section, index = _find_entry(raw, case.id)
    entry = _as_entry(raw[section][index])
    record = case.provenance or LabelRecord()
    if case.label is not None:
        record.history.append(EarlierLabel(case.label, utc_now(), record.current))
    record.current = provenance or LabelProvenance()
    entry.update({"id": case.id, "label": relative(target, manifest.parent),
                  "provenance": record.to_json(manifest.parent)})
    if section == "pool":
        del raw["pool"][index]
        raw["training"].append(entry)
        for split in raw.get("splits") or []:  # a new labelled case trains in every fold
            split.setdefault("train", []).append(case.id)
    else:
        raw[section][index] = entry
    if "numTraining" in raw:
        raw["numTraining"] = len(raw["training"])
    _write_manifest(manifest, raw)
    _step(on_step, "manifest_written")
    return target


def add_pool(manifest: str | os.PathLike, cases: list[Case]) -> list[str]:
    """Add unlabelled cases to the manifest's ``pool``; returns the ids added.

    Cases whose images are already in the manifest are skipped (adding a folder twice adds nothing);
    an id already used by another case is an error.
    """
    manifest = Path(manifest)
    raw, dataset = _editable_manifest(manifest)
    known_images = {tuple(c.images) for c in dataset.all_cases + dataset.pool}
    known_ids = {c.id for c in dataset.all_cases + dataset.pool}
    expected = len(dataset.channel_names)
    added: list[str] = []
    for case in cases:
        images = [Path(p).resolve() for p in case.images]
        if tuple(images) in known_images:
            continue
        missing = [p for p in images if not p.exists()]
        if missing:
            raise DeepMedError(f"{missing[0]}: file not found (case {case.id})")
        if expected and len(images) not in (1, expected):
            raise DeepMedError(f"case {case.id}: expected {expected} channel file(s) "
                               f"({', '.join(dataset.channel_names.values())}), got {len(images)}")
        if case.id in known_ids:
            raise DeepMedError(f"case {case.id}: id already used in {manifest.name}; give the case another id")
        raw.setdefault("pool", []).append({"id": case.id, "image": [relative(p, manifest.parent) for p in images]})
        known_ids.add(case.id)
        known_images.add(tuple(images))
        added.append(case.id)
    if added:
        _write_manifest(manifest, raw)
    return added


def pool_cases_from_paths(paths: list[str | os.PathLike],
                          image_patterns: list[str] | None = None) -> tuple[list[Case], list[str]]:
    """Unlabelled cases from files and folders, paired into channels as ``deepmed dataset scan`` pairs them
    (one file-name pattern per channel); without patterns each image is one single-channel case.
    Files named like labels (``_seg``, ``_label``) are skipped with a warning. Returns (cases, warnings)."""
    from deepmed.data.scan import ScanPatterns, classify_entry, find_image_entries

    patterns = ScanPatterns(images=list(image_patterns or []))
    entries: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise DeepMedError(f"{path}: file or folder not found")
        entries.extend(find_image_entries(path) if path.is_dir() else [path])
    channels = max(1, len(patterns.images))
    subjects: dict[str, dict[int, list[Path]]] = {}
    warnings: list[str] = []
    for entry in entries:
        found = classify_entry(entry, patterns)
        if found is None or found[0] == "label":
            warnings.append(f"{entry}: skipped ({'named like a label' if found else 'matches no --image pattern'})")
            continue
        _, channel, subject = found
        subjects.setdefault(subject or case_id_from_path(str(entry)), {}).setdefault(channel, []).append(entry)
    cases = []
    for subject, files in sorted(subjects.items()):
        if any(len(files.get(c, [])) != 1 for c in range(channels)):
            counts = ", ".join(f"channel {c}: {len(files.get(c, []))}" for c in range(channels))
            warnings.append(f"subject '{subject}' skipped: expected one file per channel ({counts})")
            continue
        cases.append(Case(subject, [files[c][0].resolve() for c in range(channels)]))
    if not cases:
        raise DeepMedError(f"{', '.join(map(str, paths))}: no unlabelled images found")
    return cases, warnings


# ---- helpers -----------------------------------------------------------------------------------------
def _step(on_step: Callable[[str], None] | None, name: str) -> None:
    if on_step is not None:
        on_step(name)


def _editable_manifest(manifest: Path) -> tuple[dict, Dataset]:
    """The manifest's JSON (to edit) and its Dataset (checked); only JSON manifests with a case list."""
    if manifest.suffix.lower() != ".json" or not manifest.is_file():
        raise DeepMedError(f"{manifest}: expected a dataset.json manifest (CSV manifests and nnU-Net folders: "
                           "convert with 'deepmed dataset scan' first)")
    dataset = Dataset.load(manifest)
    raw = read_json_object(manifest, "the dataset manifest")
    if "training" not in raw:
        raise DeepMedError(f"{manifest}: lists no 'training' cases (an nnU-Net raw folder's dataset.json); "
                           "convert it with 'deepmed dataset scan' first")
    return raw, dataset


def _write_manifest(manifest: Path, raw: dict) -> None:
    """Check the edited manifest parses, then replace the file atomically."""
    _, problems = parse_manifest(raw, manifest.parent, str(manifest))
    if problems:  # a bug here, not the user's: never write a manifest DeepMed cannot read back
        raise DeepMedError(f"{manifest}: not saved, the edit would make it invalid: {problems[0]}")
    write_text_atomic(manifest, json.dumps(raw, indent=2) + "\n")


def _entry_id(entry) -> str:
    entry = _as_entry(entry)
    if entry.get("id"):
        return str(entry["id"])
    images = entry.get("image")
    first = images if isinstance(images, str) else images[0]
    return case_id_from_path(entry.get("label") or first)


def _as_entry(entry) -> dict:
    return {"image": entry} if isinstance(entry, str) else dict(entry)


def _find_entry(raw: dict, case_id: str) -> tuple[str, int]:
    for section in SECTIONS:
        for index, entry in enumerate(raw.get(section) or []):
            if _entry_id(entry) == case_id:
                return section, index
    raise DeepMedError(f"no case '{case_id}' in the manifest")  # Dataset.case found it: cannot happen


def _file_stem(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", case_id).lstrip(".") or "case"


def _next_version(folder: Path, case_id: str) -> int:
    """One more than the highest version on disk (a file left by an interrupted save is never reused)."""
    pattern = re.compile(re.escape(_file_stem(case_id)) + r"_label\.v(\d+)\.")
    versions = [int(m.group(1)) for f in folder.iterdir() if (m := pattern.match(f.name))]
    return max(versions, default=0) + 1


def _label_on_case_grid(label: sitk.Image, where: str, case: Case, dataset: Dataset) -> sitk.Image:
    """``label`` on the grid of the case's first channel, its values checked against the manifest's labels."""
    if label.GetDimension() != 3 or label.GetNumberOfComponentsPerPixel() != 1:
        raise DeepMedError(f"{where}: expected a 3D label map with one value per voxel, got "
                           f"{label.GetDimension()}D with {label.GetNumberOfComponentsPerPixel()} component(s)")
    reference = read_channels(case.images)[0]
    try:
        label = align_to_grid(label, reference)
    except ValueError:
        raise DeepMedError(f"{where}: not on the grid of case {case.id}'s image {case.images[0].name} "
                           f"(label vs image): {'; '.join(grid_differences(label, reference))}") from None
    if not dataset.labels:  # regression targets: any values
        return label
    values = np.unique(sitk.GetArrayViewFromImage(label))
    fractional = values[values != np.round(values)]
    if fractional.size:
        raise DeepMedError(f"{where}: label values must be whole numbers, got {fractional[0]:g}")
    unknown = sorted(set(int(v) for v in values) - set(dataset.labels.values()))
    if unknown:
        table = ", ".join(f"{v}={k}" for k, v in sorted(dataset.labels.items(), key=lambda item: item[1]))
        raise DeepMedError(f"{where}: label value(s) {', '.join(map(str, unknown))} not among the manifest's "
                           f"labels ({table})")
    return label

