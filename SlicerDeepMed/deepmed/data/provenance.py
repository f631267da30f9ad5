"""Where a case's label came from: the model that proposed it, whether a person corrected it, when, and the
earlier labels it replaced (each kept in its own file).

In the manifest this is a case's ``provenance`` key::

    {"id": "c7", "image": "c7.nii.gz", "label": "labels/c7_label.v2.nii.gz",
     "provenance": {"proposed_by": "liver", "model_version": "2", "corrected_by_hand": true,
                    "when": "2026-12-03T20:15:00Z", "note": "",
                    "history": [{"label": "labels/c7_label.v1.nii.gz", "replaced": "2026-12-03T20:15:00Z",
                                 "proposed_by": "liver", "model_version": "1", "corrected_by_hand": false,
                                 "when": "2026-12-01T09:00:00Z"}]}}
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

PROVENANCE_KEYS = {"proposed_by", "model_version", "corrected_by_hand", "when", "note", "history"}
HISTORY_KEYS = {"label", "replaced"} | (PROVENANCE_KEYS - {"history"})


def utc_now() -> str:
    """The current time as UTC ISO 8601, to the second: ``2026-12-03T20:15:00Z``."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LabelProvenance:
    """How one label was made. ``proposed_by`` is empty for a label drawn from scratch."""

    proposed_by: str = ""        # the model id (as in the library) whose prediction was the starting point
    model_version: str = ""      # that model's version ("2" for ``liver@2``)
    corrected_by_hand: bool = True
    when: str = field(default_factory=utc_now)  # UTC ISO 8601
    note: str = ""

    @classmethod
    def from_model(cls, model: str | None, corrected_by_hand: bool = True, note: str = "") -> LabelProvenance:
        """``from_model("liver@2")`` -> proposed_by "liver", model_version "2"."""
        name, _, version = (model or "").partition("@")
        return cls(name.strip(), version.strip(), corrected_by_hand, utc_now(), note)

    def to_json(self) -> dict:
        entry = {"proposed_by": self.proposed_by, "model_version": self.model_version,
                 "corrected_by_hand": self.corrected_by_hand, "when": self.when}
        if self.note:
            entry["note"] = self.note
        return entry


@dataclass(frozen=True)
class EarlierLabel:
    """A label that was replaced: its file (kept, never overwritten), when it was replaced, how it was made."""

    label: Path
    replaced: str
    provenance: LabelProvenance | None = None

    def to_json(self, root: Path) -> dict:
        entry = {"label": relative(self.label, root), "replaced": self.replaced}
        if self.provenance is not None:
            entry.update(self.provenance.to_json())
        return entry


@dataclass
class LabelRecord:
    """A case's ``provenance`` key: how its current label was made and the labels it replaced, oldest first."""

    current: LabelProvenance | None = None
    history: list[EarlierLabel] = field(default_factory=list)

    def to_json(self, root: Path) -> dict:
        entry = self.current.to_json() if self.current is not None else {}
        if self.history:
            entry["history"] = [earlier.to_json(root) for earlier in self.history]
        return entry


def relative(path: Path, root: Path) -> str:
    try:
        return os.path.relpath(path, root)
    except ValueError:  # another drive on Windows
        return str(path)


def _provenance(entry: dict, where: str, problems: list[str]) -> LabelProvenance | None:
    """The provenance fields of ``entry`` (None when it names no model, no hand correction and no time)."""
    if not any(key in entry for key in ("proposed_by", "model_version", "corrected_by_hand", "when", "note")):
        return None
    texts = {}
    for key in ("proposed_by", "model_version", "when", "note"):
        value = entry.get(key, "")
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            problems.append(f"{where}: '{key}' must be text, got {value!r}")
            value = ""
        texts[key] = str(value)
    by_hand = entry.get("corrected_by_hand", False)
    if not isinstance(by_hand, bool):
        problems.append(f"{where}: 'corrected_by_hand' must be true or false, got {by_hand!r}")
        by_hand = False
    return LabelProvenance(texts["proposed_by"], texts["model_version"], by_hand, texts["when"], texts["note"])


def parse_label_record(raw, root: Path, where: str, problems: list[str]) -> LabelRecord | None:
    """Read a case's ``provenance`` key; every problem is appended to ``problems`` (one line each)."""
    if raw is None:
        return None
    where = f"{where}.provenance"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object, got {type(raw).__name__}")
        return None
    for key in raw:
        if key not in PROVENANCE_KEYS:
            problems.append(f"{where}: unknown key '{key}'; known keys: {', '.join(sorted(PROVENANCE_KEYS))}")
    history: list[EarlierLabel] = []
    entries = raw.get("history", [])
    if not isinstance(entries, list):
        problems.append(f"{where}: 'history' must be a list of earlier labels")
        entries = []
    for index, entry in enumerate(entries):
        here = f"{where}.history[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            problems.append(f"{here}: expected an object with the earlier label's path under 'label', got {entry!r}")
            continue
        for key in entry:
            if key not in HISTORY_KEYS:
                problems.append(f"{here}: unknown key '{key}'; known keys: {', '.join(sorted(HISTORY_KEYS))}")
        history.append(EarlierLabel((root / entry["label"]).resolve(), str(entry.get("replaced", "")),
                                    _provenance(entry, here, problems)))
    return LabelRecord(_provenance(raw, where, problems), history)
