"""Numbered versions of a library model, and which one is promoted (``deepmed improve``).

Layout in the library folder::

    LIBRARY/liver/                 version 1 (any model installed or trained as ``liver``)
    LIBRARY/liver@2/               version 2, 3, ...: fine-tuned by ``deepmed improve``
    LIBRARY/liver.versions.json    {"promoted": 2, "held_out": [...], "history": [...]}

``liver`` names the promoted version (version 1 when there is no ``liver.versions.json``); ``liver@2`` names
version 2 whether promoted or not. The record also keeps the fixed held-out cases that every candidate of
this model is judged on (chosen once, on the first improvement) and one entry per improvement.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.utils.atomic import write_text_atomic
from deepmed.utils.json_files import read_json_object

SEPARATOR = "@"
VERSIONED_ID = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,99})@(?P<version>[1-9][0-9]{0,5})$")
RECORD_SUFFIX = ".versions.json"
#: A new version is promoted when its held-out mean Dice is at least the old one minus this.
DEFAULT_TOLERANCE = 0.005


def split_version(model_id: str) -> tuple[str, int | None]:
    """``liver@2`` -> ("liver", 2); ``liver`` -> ("liver", None)."""
    match = VERSIONED_ID.match(str(model_id))
    return (match["name"], int(match["version"])) if match else (str(model_id), None)


def version_dir(root: Path, name: str, version: int) -> Path:
    """The folder of ``version`` of model ``name`` (version 1 is the plain name)."""
    return Path(root) / (name if version == 1 else f"{name}{SEPARATOR}{version}")


@dataclass(frozen=True)
class ModelVersions:
    """What the library records about a model's versions (``LIBRARY/NAME.versions.json``)."""

    name: str
    promoted: int = 1
    held_out: tuple[str, ...] = ()
    history: tuple[dict, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {"name": self.name, "promoted": self.promoted, "held_out": list(self.held_out),
                "history": list(self.history)}

    def promote(self, version: int) -> ModelVersions:
        return replace(self, promoted=version)

    def recorded(self, entry: dict) -> ModelVersions:
        return replace(self, history=(*self.history, entry))


def record_path(root: Path, name: str) -> Path:
    return Path(root) / f"{name}{RECORD_SUFFIX}"


def read_versions(root: Path, name: str) -> ModelVersions:
    """The record of ``name`` (version 1 promoted, nothing held out, when there is none)."""
    path = record_path(root, name)
    if not path.is_file():
        return ModelVersions(name)
    data = read_json_object(path, "the version record")
    try:
        return ModelVersions(name, int(data.get("promoted", 1)), tuple(str(c) for c in data.get("held_out", [])),
                             tuple(data.get("history", [])))
    except (ValueError, TypeError, AttributeError) as exc:
        raise DeepMedError(f"{path}: unreadable version record ({exc})") from None


def write_versions(root: Path, versions: ModelVersions) -> Path:
    return write_text_atomic(record_path(root, versions.name), json.dumps(versions.to_json(), indent=2) + "\n")


def available_versions(root: Path, name: str) -> list[int]:
    """The version numbers whose folders exist, ascending."""
    root = Path(root)
    found = [1] if (root / name).is_dir() else []
    if root.is_dir():
        for path in root.glob(f"{glob_escape(name)}{SEPARATOR}*"):
            other, number = split_version(path.name)
            if other == name and number is not None and path.is_dir():
                found.append(number)
    return sorted(set(found))


def promoted_version(root: Path, name: str) -> int | None:
    """The promoted version of ``name`` (the newest existing one if the promoted folder went missing);
    None when the model has no version at all."""
    existing = available_versions(root, name)
    if not existing:
        return None
    promoted = read_versions(root, name).promoted
    return promoted if promoted in existing else existing[-1]


def next_version(root: Path, name: str) -> int:
    existing = available_versions(root, name)
    return (existing[-1] if existing else 0) + 1


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)
