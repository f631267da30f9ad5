"""Other ways datasets are stored: nnU-Net v2 raw folders and NiftyNet-style CSV files.

Each reader returns the dataset as manifest data (the JSON structure of ``dataset.json``, absolute paths) and
the problems found; ``deepmed.data.manifest`` parses it, so this module does not depend on the manifest.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.io.image_io import strip_image_extension
from deepmed.utils.json_files import read_json_object


def nnunet_folder_manifest(folder: Path) -> tuple[dict, list[str]]:
    """Read an nnU-Net v2 raw folder: ``dataset.json``, ``imagesTr/CASE_0000.ext``, ``labelsTr/CASE.ext``."""
    problems: list[str] = []
    meta: dict = {}
    meta_path = folder / "dataset.json"
    if meta_path.is_file():
        meta = read_json_object(meta_path, "the nnU-Net dataset description")
    ending = meta.get("file_ending")
    data = {"name": str(meta.get("name", folder.name)), "description": str(meta.get("description", "")),
            "channel_names": meta.get("channel_names") or meta.get("modality") or {},
            "labels": meta.get("labels") or {}, "training": [], "test": []}
    for images_dir, labels_dir, section in (("imagesTr", "labelsTr", "training"), ("imagesTs", None, "test")):
        channels = _group_channels(folder / images_dir, ending)
        for case_id, files in sorted(channels.items()):
            entry: dict = {"id": case_id, "image": [str(f) for f in files]}
            if labels_dir:
                found = _find_label(folder / labels_dir, case_id, ending)
                if found is None:
                    problems.append(f"{folder / labels_dir}: no label file for case '{case_id}'")
                    continue
                entry["label"] = str(found)
            data[section].append(entry)
    if not data["training"] and not problems:
        problems.append(f"{folder / 'imagesTr'}: dataset is empty: no images found")
    return data, problems


def _group_channels(folder: Path, ending: str | None) -> dict[str, list[Path]]:
    grouped: dict[str, dict[int, Path]] = defaultdict(dict)
    if not folder.is_dir():
        return {}
    for f in folder.iterdir():
        if ending and not f.name.endswith(ending):
            continue
        stem = strip_image_extension(f.name)
        if stem == f.name or len(stem) < 6 or stem[-5] != "_" or not stem[-4:].isdigit():
            continue
        grouped[stem[:-5]][int(stem[-4:])] = f.resolve()
    return {cid: [chans[i] for i in sorted(chans)] for cid, chans in grouped.items()}


def _find_label(folder: Path, case_id: str, ending: str | None) -> Path | None:
    if not folder.is_dir():
        return None
    for f in folder.iterdir():
        if strip_image_extension(f.name) == case_id and (not ending or f.name.endswith(ending)):
            return f.resolve()
    return None


ID_COLUMNS = ("id", "subject_id", "case", "subject")


def csv_manifest(path: Path) -> tuple[dict, list[str]]:
    """Read a NiftyNet-style CSV: a header row with an id column, one or more ``image*`` columns, ``label``,
    and optionally ``value`` (a case-level target: a number or a class name).

    Example::

        subject_id,image_t1,image_flair,label
        s01,s01_t1.nii.gz,s01_flair.nii.gz,s01_seg.nii.gz
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DeepMedError(f"{path}: cannot read CSV ({exc})") from None
    if not rows:
        raise DeepMedError(f"{path}: dataset is empty: no rows after the header")
    columns = list(rows[0].keys())
    id_column = next((c for c in columns if c.strip().lower() in ID_COLUMNS), None)
    image_columns = [c for c in columns if c.strip().lower().startswith("image")]
    if id_column is None or not image_columns:
        raise DeepMedError(f"{path}: expected a header with an id column ({', '.join(ID_COLUMNS)}), image column(s) "
                           f"named image*, and optionally label; got {', '.join(columns)}")
    label_column = next((c for c in columns if c.strip().lower() in ("label", "target")), None)
    value_column = next((c for c in columns if c.strip().lower() == "value"), None)
    root = path.parent
    data: dict = {"name": path.stem, "training": [],
                  "channel_names": {str(i): c.strip()[6:] or c.strip() for i, c in enumerate(image_columns)}}
    problems = []
    for line, row in enumerate(rows, start=2):
        images = [(root / row[c].strip()).resolve() for c in image_columns if (row.get(c) or "").strip()]
        if len(images) != len(image_columns):
            problems.append(f"{path}: line {line}: expected {len(image_columns)} image path(s), got {len(images)}")
            continue
        entry = {"id": row[id_column].strip(), "image": [str(i) for i in images]}
        label = (row.get(label_column) or "").strip() if label_column else ""
        if label:
            entry["label"] = str((root / label).resolve())
        value = (row.get(value_column) or "").strip() if value_column else ""
        if value:
            entry["value"] = _number_or_text(value)
        data["training"].append(entry)
    return data, problems


def _number_or_text(text: str) -> int | float | str:
    """``63`` -> 63, ``63.5`` -> 63.5, ``female`` -> "female"."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
