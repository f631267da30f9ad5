"""What ``deepmed review`` and ``deepmed improve`` leave behind, read as typed values (Qt-free, no torch).

* ``REVIEW_DIR/ranking.csv``: one row per pool case, most worth correcting first (columns ``rank``, ``case``,
  ``score``, ``prediction``, ``uncertainty``, ``model``, ``model_version``; paths relative to ``REVIEW_DIR``)
  -> :class:`RankedCase` (deepmed/workflows/review.py writes it).
* ``NAME@N/improvement.json``: per label Dice of the old and the new version on the fixed held-out cases, and
  whether the new one was promoted -> :class:`Comparison` (deepmed/workflows/improve.py writes it).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

RANKING_FILE = "ranking.csv"
REQUIRED_COLUMNS = ("rank", "case", "score", "prediction")

PENDING, ACCEPTED, SKIPPED = "pending", "accepted", "skipped"


class RankingError(ValueError):
    """A ranking or comparison file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class RankedCase:
    rank: int
    case: str
    score: float | None             # the uncertainty score (None for the 'first' strategy, or when not computed)
    prediction: Path                # the model's label map, on the case's grid
    uncertainty: Path | None        # the uncertainty map, on the case's grid
    model: str = ""                 # the model id that predicted it
    version: str = ""               # its library version

    @property
    def proposedBy(self) -> str:
        """``name@version`` (or the plain id when no version is recorded): the provenance of an accepted label."""
        name = self.model.split("@", 1)[0]
        return f"{name}@{self.version}" if name and self.version else self.model


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def readRanking(reviewFolder) -> list[RankedCase]:
    """The rows of ``REVIEW_DIR/ranking.csv`` in rank order."""
    folder = Path(reviewFolder)
    path = folder / RANKING_FILE
    if not path.is_file():
        raise RankingError(f"{path}: no ranking yet (rank the pool first)")
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise RankingError(f"{path}: expected columns {', '.join(REQUIRED_COLUMNS)}, missing {', '.join(missing)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            rank = _number(row["rank"])
            if rank is None or not row["case"] or not row["prediction"]:
                raise RankingError(f"{path}: line {line}: expected a rank, a case and a prediction, got "
                                   f"{row['rank']!r}, {row['case']!r}, {row['prediction']!r}")
            uncertainty = row.get("uncertainty") or ""
            rows.append(RankedCase(rank=int(rank), case=row["case"], score=_number(row["score"]),
                                   prediction=folder / row["prediction"],
                                   uncertainty=folder / uncertainty if uncertainty else None,
                                   model=row.get("model") or "",
                                   version=str(row.get("model_version") or row.get("version") or "")))
    return sorted(rows, key=lambda row: row.rank)


@dataclass(frozen=True)
class LabelScores:
    label: str
    old: float | None
    new: float | None


@dataclass(frozen=True)
class Comparison:
    """Old vs new on the fixed held-out cases; ``promoted``: whether ``newModel`` is now what the name means."""

    oldModel: str
    newModel: str
    promoted: bool
    labels: list[LabelScores] = field(default_factory=list)
    oldMean: float | None = None
    newMean: float | None = None
    heldOut: list[str] = field(default_factory=list)
    reason: str = ""


def readComparison(path) -> Comparison:
    """``NAME@N/improvement.json`` as ``deepmed improve`` writes it: ``model``, ``old_version``, ``new_version``,
    ``old`` and ``new`` (label -> held-out Dice), ``old_mean``, ``new_mean``, ``cases``, ``tolerance``,
    ``promoted``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RankingError(f"{path}: unreadable comparison ({error})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("old", "new")):
        raise RankingError(f"{path}: expected an object with 'old' and 'new' Dice per label, got "
                           f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    old, new, name = data["old"], data["new"], str(data.get("model", ""))
    labels = [LabelScores(label, _number(old.get(label)), _number(new.get(label)))
              for label in dict.fromkeys([*old, *new])]
    verdict = "" if data.get("promoted") else (f"new mean Dice below old - {data['tolerance']:g}"
                                               if isinstance(data.get("tolerance"), (int, float)) else "")
    return Comparison(oldModel=f"{name}@{data.get('old_version', '?')}",
                      newModel=f"{name}@{data.get('new_version', '?')}", promoted=bool(data.get("promoted")),
                      labels=labels, oldMean=_number(data.get("old_mean")), newMean=_number(data.get("new_mean")),
                      heldOut=[str(c) for c in data.get("cases", [])], reason=verdict)
