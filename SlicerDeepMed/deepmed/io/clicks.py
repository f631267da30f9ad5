"""Clicks given to an interactive model: points in physical RAS or LPS coordinates, per label, +/-."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from deepmed.errors import DeepMedError

COORDINATE_SYSTEMS = ("RAS", "LPS")


@dataclass(frozen=True)
class Click:
    """One click: a physical point (in its ClickSet's system), positive (inside) or negative (outside)."""

    point: tuple[float, float, float]
    positive: bool
    label: str


@dataclass(frozen=True)
class ClickSet:
    """Clicks placed in one coordinate system ("RAS" as Slicer shows, or "LPS" as ITK/DICOM use)."""

    clicks: tuple[Click, ...] = ()
    coordinates: str = "LPS"

    def __post_init__(self) -> None:
        if self.coordinates not in COORDINATE_SYSTEMS:
            raise DeepMedError(
                f"clicks: coordinates must be one of {', '.join(COORDINATE_SYSTEMS)}, got {self.coordinates!r}"
            )

    def to_lps(self) -> ClickSet:
        """The same clicks in LPS (RAS -> LPS negates x and y)."""
        if self.coordinates == "LPS":
            return self
        flipped = tuple(
            Click((-c.point[0], -c.point[1], c.point[2]), c.positive, c.label) for c in self.clicks
        )
        return ClickSet(flipped, "LPS")

    @property
    def labels(self) -> tuple[str, ...]:
        """The distinct labels clicked, in order of first appearance."""
        return tuple(dict.fromkeys(c.label for c in self.clicks))

    def for_label(self, label: str) -> ClickSet:
        """Only the clicks of one label."""
        return ClickSet(tuple(c for c in self.clicks if c.label == label), self.coordinates)

    def to_dict(self) -> dict:
        return {
            "coordinates": self.coordinates,
            "clicks": [
                {"point": [float(v) for v in c.point], "label": c.label, "positive": c.positive}
                for c in self.clicks
            ],
        }

    @classmethod
    def from_dict(cls, document: dict, where: str = "clicks") -> ClickSet:
        """Parse {"coordinates": "RAS", "clicks": [{"point": [x,y,z], "label": "l", "positive": true}]}."""
        if not isinstance(document, dict):
            raise DeepMedError(f"{where}: expected a JSON object, got {type(document).__name__}")
        coordinates = document.get("coordinates")
        if coordinates is None:
            raise DeepMedError(f"{where}: key 'coordinates' is missing (expected 'RAS' or 'LPS')")
        if not isinstance(coordinates, str) or coordinates.upper() not in COORDINATE_SYSTEMS:
            raise DeepMedError(f"{where}: 'coordinates' must be 'RAS' or 'LPS', got {coordinates!r}")
        items = document.get("clicks", [])
        if not isinstance(items, list):
            raise DeepMedError(f"{where}: 'clicks' must be a list, got {type(items).__name__}")
        return cls(tuple(_parse_click(item, f"{where}: clicks[{i}]") for i, item in enumerate(items)),
                   coordinates.upper())


def _parse_click(item: object, where: str) -> Click:
    if not isinstance(item, dict):
        raise DeepMedError(f"{where}: expected an object with 'point', 'label', 'positive', got {item!r}")
    point = item.get("point")
    if (not isinstance(point, (list, tuple)) or len(point) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
            or not all(math.isfinite(v) for v in point)):
        raise DeepMedError(f"{where}: 'point' must be 3 finite numbers [x, y, z], got {point!r}")
    label = item.get("label")
    if not isinstance(label, str) or not label:
        raise DeepMedError(f"{where}: 'label' must be a label name (text), got {label!r}")
    positive = item.get("positive", True)
    if not isinstance(positive, bool):
        raise DeepMedError(f"{where}: 'positive' must be true or false, got {positive!r}")
    return Click(tuple(float(v) for v in point), positive, label)


def read_clicks(path) -> ClickSet:
    """Read a clicks JSON file; a bad file is a DeepMedError naming it."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeepMedError(f"{path}: clicks file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DeepMedError(f"{path}: not a readable JSON clicks file ({error})") from None
    return ClickSet.from_dict(document, where=str(path))


def write_clicks(clicks: ClickSet, path) -> None:
    Path(path).write_text(json.dumps(clicks.to_dict(), indent=2) + "\n", encoding="utf-8")
