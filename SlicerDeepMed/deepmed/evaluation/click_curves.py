"""Number-of-clicks curves: Dice after k simulated clicks, NoC@85 / NoC@90, as the interactive-segmentation
literature reports them (RITM, SAM-Med3D, nnInteractive).

A curve holds the Dice after 0, 1, ..., N clicks of one label in one case (0 clicks: the model's automatic
mask). NoC@t is the number of clicks after which the Dice first reaches t; a curve that never reaches t
counts as N (the cap), as in the literature, and is also counted as a failure so the cap does not hide it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from deepmed.utils.atomic import write_text_atomic

DEFAULT_MAX_CLICKS = 20
DEFAULT_REPORT_AT = (0, 1, 3, 5, 10)
DEFAULT_THRESHOLDS = (0.85, 0.90)


@dataclass(frozen=True)
class PlacedClick:
    """A simulated click as placed: voxel index (z, y, x), physical LPS point (mm), sign."""

    index_zyx: tuple[int, int, int]
    point_lps: tuple[float, float, float]
    positive: bool


@dataclass(frozen=True)
class ClickCurve:
    """Dice of one label in one case after 0..N clicks (``dice[k]``: after k clicks)."""

    case: str
    label: str
    dice: tuple[float, ...]
    clicks: tuple[PlacedClick, ...] = ()
    seconds: tuple[float, ...] = ()  # time of each refinement (0 clicks included)

    @property
    def max_clicks(self) -> int:
        return len(self.dice) - 1

    def noc(self, threshold: float, cap: int | None = None) -> int:
        """Clicks needed to reach ``threshold`` Dice; ``cap`` (default N) when never reached."""
        return clicks_to_reach(self.dice, threshold, cap)

    def reached(self, threshold: float) -> bool:
        return any(d >= threshold for d in self.dice)


def clicks_to_reach(dice: Sequence[float], threshold: float, cap: int | None = None) -> int:
    """The first k with ``dice[k] >= threshold`` (0: the automatic mask already reaches it); ``cap``
    (default ``len(dice) - 1``) when no k does."""
    if not dice:
        raise ValueError("clicks_to_reach: expected at least the Dice after 0 clicks, got an empty curve")
    cap = len(dice) - 1 if cap is None else cap
    for k, value in enumerate(dice[:cap + 1]):
        if value >= threshold:
            return k
    return cap


@dataclass(frozen=True)
class LabelSummary:
    """Means over the cases of one label: Dice at the report counts, NoC per threshold, failures."""

    label: str
    cases: int
    dice_at: dict[int, float]
    noc: dict[float, float]
    failures: dict[float, int]  # cases that never reach the threshold within the cap (counted as the cap)
    automatic_dice: float | None = None  # the automatic model's Dice, when one is compared


@dataclass
class ClickCurveResult:
    """All curves of a run and their per-label summary."""

    curves: list[ClickCurve]
    max_clicks: int = DEFAULT_MAX_CLICKS
    report_at: tuple[int, ...] = DEFAULT_REPORT_AT
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    automatic_dice: dict[str, float] = field(default_factory=dict)  # label -> mean Dice of an automatic model

    def summary(self) -> list[LabelSummary]:
        labels = list(dict.fromkeys(c.label for c in self.curves))
        counts = [k for k in self.report_at if k <= self.max_clicks]
        result = []
        for label in labels:
            curves = [c for c in self.curves if c.label == label]
            result.append(LabelSummary(
                label=label, cases=len(curves),
                dice_at={k: float(np.mean([c.dice[min(k, c.max_clicks)] for c in curves])) for k in counts},
                noc={t: float(np.mean([c.noc(t, self.max_clicks) for c in curves])) for t in self.thresholds},
                failures={t: sum(not c.reached(t) for c in curves) for t in self.thresholds},
                automatic_dice=self.automatic_dice.get(label)))
        return result

    # ---- output ----------------------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """One row per case and label: Dice after each click count, NoC per threshold."""
        rows = []
        for curve in self.curves:
            row: dict = {"case": curve.case, "label": curve.label}
            row.update({f"dice_{k}": round(d, 4) for k, d in enumerate(curve.dice)})
            row.update({_noc_key(t): curve.noc(t, self.max_clicks) for t in self.thresholds})
            rows.append(row)
        return rows

    def to_json(self) -> dict:
        return {"max_clicks": self.max_clicks, "report_at": list(self.report_at),
                "thresholds": list(self.thresholds),
                "noc_rule": "clicks until the Dice first reaches the threshold; never reached counts as max_clicks",
                "summary": [_summary_json(s) for s in self.summary()],
                "curves": [asdict(c) for c in self.curves]}

    def write(self, csv_path: str | os.PathLike, json_path: str | os.PathLike | None = None) -> list:
        """Write the per-case CSV and the JSON (summary and curves with their clicks); returns the paths."""
        rows = self.rows()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
        written = [write_text_atomic(csv_path, buffer.getvalue())]
        if json_path is not None:
            written.append(write_text_atomic(json_path, json.dumps(_finite(self.to_json()), indent=2) + "\n"))
        return written

    def format_table(self) -> str:
        """A plain-text table: label, cases, Dice at each report count, NoC@t (failures), automatic Dice."""
        summaries = self.summary()
        counts = [k for k in self.report_at if k <= self.max_clicks]
        head = f"{'label':14}{'cases':>6}" + "".join(f"{f'Dice@{k}':>9}" for k in counts) + "".join(
            f"{_noc_key(t).replace('noc', 'NoC@'):>12}" for t in self.thresholds)
        if any(s.automatic_dice is not None for s in summaries):
            head += f"{'automatic':>11}"
        lines = [head]
        for s in summaries:
            line = f"{s.label:14}{s.cases:>6}" + "".join(f"{s.dice_at[k]:9.3f}" for k in counts)
            line += "".join(f"{f'{s.noc[t]:.1f} ({s.failures[t]})':>12}" for t in self.thresholds)
            if s.automatic_dice is not None:
                line += f"{s.automatic_dice:11.3f}"
            lines.append(line)
        lines.append(f"NoC: clicks to reach the Dice (max {self.max_clicks}; in brackets the cases that never "
                     f"reach it, counted as {self.max_clicks})")
        return "\n".join(lines)


def _noc_key(threshold: float) -> str:
    return f"noc{round(threshold * 100):d}"


def _summary_json(summary: LabelSummary) -> dict:
    return {"label": summary.label, "cases": summary.cases,
            "dice_at": {str(k): v for k, v in summary.dice_at.items()},
            **{_noc_key(t): v for t, v in summary.noc.items()},
            **{f"{_noc_key(t)}_failures": v for t, v in summary.failures.items()},
            "automatic_dice": summary.automatic_dice}


def _finite(value):
    """JSON-safe: non-finite floats become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
