"""The dataset manifest: one JSON format following the MSD / nnU-Net ``dataset.json`` conventions.

Example manifest (paths relative to the manifest's folder)::

    {
      "name": "Brain",
      "channel_names": {"0": "T1", "1": "FLAIR"},      # or MSD's "modality"
      "labels": {"background": 0, "tumour": 1},        # name->value (nnU-Net v2) or value->name (MSD)
      "training": [{"image": ["c1_t1.nii.gz", "c1_flair.nii.gz"], "label": "c1_seg.nii.gz"}],
      "test": [{"image": ["c9_t1.nii.gz", "c9_flair.nii.gz"]}],
      "pool": [{"image": ["u1_t1.nii.gz", "u1_flair.nii.gz"]}],   # unlabelled cases waiting for a label
      "splits": [{"train": ["c1", ...], "val": [...]}]
    }

For regression the target image sits under ``label`` and ``labels`` may be empty. Case-level targets (a class
name, an age, a list of values) sit under ``value``: ``{"image": "s01_t1.nii.gz", "value": 63.5}``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepmed.data import formats
from deepmed.data.provenance import LabelRecord, parse_label_record, relative
from deepmed.errors import DeepMedError
from deepmed.io.image_io import strip_image_extension
from deepmed.utils.atomic import write_text_atomic
from deepmed.utils.choices import suggest
from deepmed.utils.json_files import read_json

TOP_LEVEL_KEYS = {
    "name", "description", "channel_names", "modality", "labels", "training", "test", "splits", "numTraining",
    "numTest", "file_ending", "tensorImageSize", "reference", "licence", "license", "release", "task",
    "overwrite_image_reader_writer", "dataset_name", "pool",
}
CASE_KEYS = {"id", "image", "label", "value", "provenance"}
CHANNEL_SUFFIX_LENGTH = 5  # nnU-Net's "_0000"


class DatasetInvalid(DeepMedError):
    """A manifest with one or more problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class Case:
    """One subject: its channel files (one path per channel, or one 4D file) and optional label/target."""

    id: str
    images: list[Path]
    label: Path | None = None
    value: Any = None  # a case-level target: number, class name, or a list of those
    provenance: LabelRecord | None = None  # how the label was made, and the earlier labels it replaced

    def to_json(self, root: Path) -> dict:
        entry: dict = {"id": self.id, "image": [relative(p, root) for p in self.images]}
        if self.label is not None:
            entry["label"] = relative(self.label, root)
        if self.value is not None:
            entry["value"] = self.value
        if self.provenance is not None:
            entry["provenance"] = self.provenance.to_json(root)
        return entry


@dataclass
class Dataset:
    """A dataset manifest in memory; paths are absolute."""

    name: str = "dataset"
    description: str = ""
    channel_names: dict[str, str] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    training: list[Case] = field(default_factory=list)
    test: list[Case] = field(default_factory=list)
    splits: list[dict[str, list[str]]] = field(default_factory=list)
    pool: list[Case] = field(default_factory=list)  # unlabelled cases: predicted, reviewed, then labelled
    source: Path | None = None

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> Dataset:
        """Load a manifest (.json), a CSV, or an nnU-Net raw folder (``imagesTr/``, ``labelsTr/``)."""
        path = Path(path)
        if not path.exists():
            raise DeepMedError(f"{path}: dataset not found")
        if path.is_dir():
            if (path / "imagesTr").is_dir():
                return cls._from_format(*formats.nnunet_folder_manifest(path), path, path / "dataset.json")
            if (path / "dataset.json").is_file():
                return cls.load(path / "dataset.json")
            raise DeepMedError(f"{path}: folder is neither an nnU-Net raw folder (imagesTr/) nor holds a dataset.json;"
                               " use 'deepmed dataset scan' to build a manifest")
        if path.suffix.lower() == ".csv":
            return cls._from_format(*formats.csv_manifest(path), path.parent, path, labels_required=False)
        if path.suffix.lower() == ".json":
            return cls.from_json_file(path)
        raise DeepMedError(f"{path}: unknown dataset format, expected .json, .csv or an nnU-Net folder")

    @classmethod
    def from_json_file(cls, path: Path) -> Dataset:
        data = read_json(path, "the dataset manifest")
        if isinstance(data, dict) and "training" not in data and (path.parent / "imagesTr").is_dir():
            return cls.load(path.parent)
        dataset, problems = parse_manifest(data, path.parent, str(path))
        if problems:
            raise DatasetInvalid(problems)
        dataset.source = path
        return dataset

    @classmethod
    def _from_format(cls, data: dict, problems: list[str], root: Path, source: Path,
                     labels_required: bool = True) -> Dataset:
        """A Dataset from manifest data another format was read into (nnU-Net folder, CSV)."""
        dataset, parse_problems = parse_manifest(data, root, str(source), labels_required)
        problems = problems + [p for p in parse_problems if p not in problems]
        if problems:
            raise DatasetInvalid(problems)
        dataset.source = source if source.is_file() else None
        return dataset

    # ---- saving --------------------------------------------------------------------------------
    def to_json(self, root: Path | None = None) -> dict:
        root = Path(root) if root is not None else (self.source.parent if self.source else Path.cwd())
        data: dict = {"name": self.name, "description": self.description, "channel_names": self.channel_names,
                      "labels": self.labels, "numTraining": len(self.training),
                      "training": [c.to_json(root) for c in self.training]}
        if self.test:
            data["numTest"] = len(self.test)
            data["test"] = [c.to_json(root) for c in self.test]
        if self.pool:
            data["pool"] = [c.to_json(root) for c in self.pool]
        if self.splits:
            data["splits"] = self.splits
        return data

    def save(self, path: str | os.PathLike) -> Path:
        """Write the manifest atomically, paths relative to its folder."""
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_json(path.parent.resolve()), indent=2) + "\n")
        self.source = path
        return path

    # ---- queries -------------------------------------------------------------------------------
    @property
    def all_cases(self) -> list[Case]:
        return self.training + self.test

    def case(self, case_id: str) -> Case:
        """The case ``case_id`` among training, test and pool cases."""
        cases = self.all_cases + self.pool
        for c in cases:
            if c.id == case_id:
                return c
        hint = suggest(case_id, [c.id for c in cases])
        raise DeepMedError(f"no case '{case_id}' in dataset {self.name}; {hint}")

    @property
    def label_names(self) -> dict[int, str]:
        """Value -> name."""
        return {v: k for k, v in self.labels.items()}

    def split_cases(self, fold: int = 0) -> tuple[list[Case], list[Case], list[Case]]:
        """(train, validation, held-out test) cases of ``fold``; without splits all training cases train."""
        if not self.splits:
            return list(self.training), [], list(self.test)
        if not 0 <= fold < len(self.splits):
            raise DeepMedError(f"fold {fold} does not exist: the dataset has {len(self.splits)} split(s)")
        split = self.splits[fold]
        by_id = {c.id: c for c in self.training}
        pick = lambda key: [by_id[i] for i in split.get(key, []) if i in by_id]  # noqa: E731
        return pick("train"), pick("val"), pick("test") + list(self.test)


LABEL_TOKENS = ("label", "labels", "seg", "segmentation", "mask")
IMAGE_TOKENS = ("image", "img")


def strip_tokens(stem: str, tokens: tuple[str, ...]) -> str:
    """Remove whole name tokens (between ``_ - .`` separators): ``brain1_label`` -> ``brain1``."""
    stripped = re.sub(r"(^|[_\-. ])(" + "|".join(tokens) + r")(?=$|[_\-. ])", "", stem, flags=re.IGNORECASE)
    return stripped.strip("_-. ") or stem


def case_id_from_path(path: str) -> str:
    """``imagesTr/liver_003_0000.nii.gz`` -> ``liver_003``; ``brain1_label.nrrd`` -> ``brain1``."""
    stem = strip_image_extension(Path(str(path).rstrip("/")).name)
    if len(stem) > CHANNEL_SUFFIX_LENGTH and stem[-5] == "_" and stem[-4:].isdigit():
        stem = stem[:-5]
    return strip_tokens(stem, LABEL_TOKENS + IMAGE_TOKENS)


def parse_labels(raw, where: str, problems: list[str]) -> dict[str, int]:
    """Read ``labels`` as name->value (nnU-Net v2) or value->name (MSD)."""
    if raw is None or raw == {}:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{where}: 'labels' must be an object, got {type(raw).__name__}")
        return {}
    labels: dict[str, int] = {}
    msd_style = all(str(k).lstrip("-").isdigit() for k in raw) and all(isinstance(v, str) for v in raw.values())
    for key, value in raw.items():
        name, number = (value, key) if msd_style else (key, value)
        try:
            if isinstance(number, (bool, list, dict)):
                raise ValueError
            labels[str(name)] = int(number)
        except (TypeError, ValueError):
            problems.append(f"{where}: label '{name}' has value {number!r}, expected an integer "
                            "(region-based labels are not supported)")
    return labels


def parse_manifest(data, root: Path, where: str, labels_required: bool = True) -> tuple[Dataset, list[str]]:
    """Build a Dataset from a parsed JSON manifest; collect every structural problem instead of stopping."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return Dataset(), [f"{where}: expected a JSON object at the top level, got {type(data).__name__}"]
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"{where}: unknown key '{key}'; {suggest(key, TOP_LEVEL_KEYS)}"
                            f"known keys: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    channels = data.get("channel_names", data.get("modality", {})) or {}
    if not isinstance(channels, dict):
        problems.append(f"{where}: 'channel_names' must be an object like {{\"0\": \"CT\"}}")
        channels = {}
    dataset = Dataset(
        name=str(data.get("name", data.get("dataset_name", root.name))),
        description=str(data.get("description", "")),
        channel_names={str(k): str(v) for k, v in channels.items()},
        labels=parse_labels(data.get("labels"), where, problems),
    )
    for section in ("training", "test", "pool"):
        entries = data.get(section, [])
        if not isinstance(entries, list):
            problems.append(f"{where}: '{section}' must be a list of cases")
            continue
        # Image-only datasets (an autoencoder's, super-resolution's from high-resolution scans) give no target;
        # once one training case gives a label or value, a case without one is a mistake.
        with_targets = any(isinstance(e, dict) and (e.get("label") is not None or e.get("value") is not None)
                           for e in entries)
        for index, entry in enumerate(entries):
            case = _parse_case(entry, root, f"{where}: {section}[{index}]", problems,
                               labels_required and section == "training" and with_targets)
            if case is not None and section == "pool" and (case.label is not None or case.value is not None):
                problems.append(f"{where}: pool[{index}] ('{case.id}') has a label: pool cases are unlabelled; "
                                "move it to 'training' (deepmed dataset add-label does)")
            elif case is not None:
                getattr(dataset, section).append(case)
    if not dataset.training and not problems:
        problems.append(f"{where}: dataset is empty: 'training' lists no cases")
    _check_unique_ids(dataset, where, problems)
    dataset.splits = parse_splits(data.get("splits", []), dataset, where, problems)
    return dataset, problems


def _parse_case(entry, root: Path, where: str, problems: list[str], needs_label: bool) -> Case | None:
    if isinstance(entry, str):  # MSD's test list holds bare paths
        entry = {"image": entry}
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected an object with 'image' and 'label', got {type(entry).__name__}")
        return None
    for key in entry:
        if key not in CASE_KEYS:
            problems.append(f"{where}: unknown key '{key}'; {suggest(key, CASE_KEYS)}"
                            f"known keys: {', '.join(sorted(CASE_KEYS))}")
    images = entry.get("image")
    if isinstance(images, str):
        images = [images]
    if not images or not all(isinstance(p, str) for p in images):
        problems.append(f"{where}: 'image' must be a path or a list of paths, got {entry.get('image')!r}")
        return None
    label, value = entry.get("label"), entry.get("value")
    if not _plain_value(value):
        problems.append(f"{where}: 'value' must be a number, a name, or a list of those, got {value!r}")
        value = None
    if needs_label and label is None and value is None:
        problems.append(f"{where}: 'label' is missing")
    if label is not None and not isinstance(label, str):
        problems.append(f"{where}: 'label' must be a path, got {label!r}")
        label = None
    case_id = str(entry.get("id") or case_id_from_path(label or images[0]))
    provenance = parse_label_record(entry.get("provenance"), root, where, problems)
    return Case(case_id, [(root / p).resolve() for p in images], (root / label).resolve() if label else None, value,
                provenance)


def _plain_value(value) -> bool:
    if isinstance(value, list):
        return all(_plain_value(v) and not isinstance(v, list) for v in value)
    return value is None or (isinstance(value, (int, float, str)) and not isinstance(value, bool))


def _check_unique_ids(dataset: Dataset, where: str, problems: list[str]) -> None:
    seen: set[str] = set()
    for case in dataset.all_cases + dataset.pool:
        if case.id in seen:
            problems.append(f"{where}: case id '{case.id}' appears more than once")
        seen.add(case.id)


def parse_splits(raw, dataset: Dataset, where: str, problems: list[str]) -> list[dict[str, list[str]]]:
    if not raw:
        return []
    if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
        problems.append(f"{where}: 'splits' must be a list of {{\"train\": [...], \"val\": [...]}} objects")
        return []
    known = {c.id for c in dataset.training}
    for index, split in enumerate(raw):
        for key, ids in split.items():
            if key not in ("train", "val", "test"):
                hint = suggest(key, ["train", "val", "test"])
                problems.append(f"{where}: splits[{index}]: unknown key '{key}'; {hint}"
                                "known keys: train, val, test")
                continue
            for case_id in ids:
                if case_id not in known:
                    problems.append(f"{where}: splits[{index}].{key}: unknown case '{case_id}'; "
                                    f"{suggest(case_id, known)}")
    return [{k: list(v) for k, v in s.items() if k in ("train", "val", "test")} for s in raw]
