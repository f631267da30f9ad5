"""Build a manifest by scanning a folder, NiftyNet style: file-name patterns pair images and labels by subject.

Each image pattern is one channel: ``--image _t1 --image _flair --label _seg`` pairs ``s01_t1.nii.gz``,
``s01_flair.nii.gz`` and ``s01_seg.nii.gz`` as subject ``s01`` (the pattern is removed from the name to get
the subject id). Without patterns, names with a token like ``label``/``seg``/``mask`` are labels and the rest
images (``brain1_image.nrrd`` + ``brain1_label.nrrd`` -> ``brain1``). DICOM series folders count as images.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.data.manifest import IMAGE_TOKENS, LABEL_TOKENS, Case, Dataset, strip_tokens
from deepmed.errors import DeepMedError
from deepmed.io.image_io import is_image_file, strip_image_extension

_SEPARATORS = "_-. "


@dataclass
class ScanPatterns:
    """NiftyNet's path-to-search filters: one image pattern per channel, a label pattern, exclusions."""

    images: list[str] = field(default_factory=list)
    label: str | None = None
    contains: list[str] = field(default_factory=list)
    not_contains: list[str] = field(default_factory=list)
    label_not_contains: list[str] = field(default_factory=list)
    image_not_contains: list[str] = field(default_factory=list)
    remove_from_id: str | None = None  # regex removed from every subject id (NiftyNet's filename_removefromid)


def _looks_like_dicom_folder(folder: Path) -> bool:
    """A folder of DICOM files without image endings, or of several ``.dcm`` files that are all one series (a
    series exported one file per slice); several ``.dcm`` series side by side stay a folder of images."""
    files = [f for f in folder.iterdir() if f.is_file() and not is_image_file(f)]
    if files:
        return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    dicom_files = [f for f in folder.iterdir() if f.is_file() and f.name.lower().endswith(".dcm")]
    if len(dicom_files) < 2:
        return False
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    return len(series) == 1 and len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])) == len(
        dicom_files)


def find_image_entries(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files and DICOM series folders below ``folder``."""
    entries: list[Path] = []
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        if here != folder and _looks_like_dicom_folder(here):
            entries.append(here)
            dirs.clear()
            continue
        entries.extend(here / f for f in files if is_image_file(here / f))
        if not recursive:
            dirs.clear()
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(entries)


def _strip_pattern(stem: str, pattern: str) -> str:
    return re.sub(r"([_\-. ])[_\-. ]+", r"\1", stem.replace(pattern, "", 1)).strip(_SEPARATORS)


def _is_label_name(stem: str) -> bool:
    tokens = [t.lower() for t in re.split(r"[_\-. ]", stem)]
    return any(t in LABEL_TOKENS for t in tokens)


def classify_entry(entry: Path, patterns: ScanPatterns) -> tuple[str, int | None, str] | None:
    """Return (role, channel, subject id) for one entry, or None when the filters exclude it."""
    name = entry.name
    stem = strip_image_extension(name)
    if any(p not in name for p in patterns.contains) or any(p in name for p in patterns.not_contains):
        return None
    if patterns.label is not None and patterns.label in name:
        if not any(p in name for p in patterns.label_not_contains):
            return "label", None, _strip_pattern(stem, patterns.label)
        return None
    if patterns.images:
        if any(p in name for p in patterns.image_not_contains):
            return None
        for channel, pattern in enumerate(patterns.images):
            if pattern in name:
                return "image", channel, _strip_pattern(stem, pattern)
        return None
    if patterns.label is None and _is_label_name(stem):
        if any(p in name for p in patterns.label_not_contains):
            return None
        return "label", None, strip_tokens(stem, LABEL_TOKENS + IMAGE_TOKENS)
    if any(p in name for p in patterns.image_not_contains):
        return None
    return "image", 0, strip_tokens(stem, IMAGE_TOKENS)


def scan_folder(folder: str | os.PathLike, patterns: ScanPatterns | None = None, *, read_labels: bool = True,
                recursive: bool = True) -> tuple[Dataset, list[str]]:
    """Scan ``folder`` into a Dataset; also return warnings (unpaired files, incomplete subjects)."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise DeepMedError(f"{folder}: not a folder")
    patterns = patterns or ScanPatterns()
    n_channels = max(1, len(patterns.images))
    images: dict[str, dict[int, list[Path]]] = defaultdict(lambda: defaultdict(list))
    labels: dict[str, list[Path]] = defaultdict(list)
    for entry in find_image_entries(folder, recursive):
        found = classify_entry(entry, patterns)
        if found is None:
            continue
        role, channel, subject = found
        if patterns.remove_from_id:
            subject = re.sub(patterns.remove_from_id, "", subject).strip(_SEPARATORS)
        if role == "label":
            labels[subject].append(entry)
        else:
            images[subject][channel].append(entry)
    warnings: list[str] = []
    dataset = Dataset(name=folder.name, channel_names={str(i): (patterns.images[i].strip(_SEPARATORS) if patterns.images
                                                                 else "image") for i in range(n_channels)})
    for subject in sorted(images):
        channels = images[subject]
        if any(len(channels.get(c, [])) != 1 for c in range(n_channels)):
            counts = ", ".join(f"channel {c}: {len(channels.get(c, []))} file(s)" for c in range(n_channels))
            warnings.append(f"{folder}: subject '{subject}' skipped, expected one file per channel ({counts}); "
                            "give one --image pattern per channel")
            continue
        files = [channels[c][0] for c in range(n_channels)]
        subject_labels = labels.pop(subject, [])
        if len(subject_labels) > 1:
            warnings.append(f"{folder}: subject '{subject}' has {len(subject_labels)} label files "
                            f"({', '.join(p.name for p in subject_labels)}); narrow the --label pattern")
            continue
        case = Case(subject or files[0].name, files, subject_labels[0] if subject_labels else None)
        (dataset.training if case.label else dataset.test).append(case)
    for subject, files in sorted(labels.items()):
        warnings.append(f"{folder}: label {files[0].name} has no matching image (subject '{subject}')")
    if not dataset.training and not dataset.test:
        raise DeepMedError(f"{folder}: no images matched the patterns; dataset is empty")
    if read_labels:
        dataset.labels = collect_label_values(dataset.training, warnings)
    return dataset, warnings


def collect_label_values(cases: list[Case], warnings: list[str] | None = None) -> dict[str, int]:
    """Name the integer values found in the label files (``background`` for 0, ``label_N`` otherwise).

    Float targets with non-integer values (regression) give an empty label table. Unreadable label files
    are skipped with a warning (``dataset check`` reports them in full).
    """
    from deepmed.io.image_io import read_image

    values: set[int] = set()
    for case in cases:
        try:
            array = sitk.GetArrayFromImage(read_image(case.label))
        except DeepMedError as exc:
            if warnings is None:
                raise
            warnings.append(f"label values not read: {exc}")
            continue
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array) & (array == np.round(array))):
            return {}
        values.update(int(v) for v in np.unique(array))
    return {("background" if v == 0 else f"label_{v}"): v for v in sorted(values)}
