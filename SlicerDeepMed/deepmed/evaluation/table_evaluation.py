"""Evaluate case-level predictions (a table: ``deepmed infer``'s ``results.csv``, or one ``.csv`` per case)
against the ``value`` of each case in a manifest.

What is evaluated follows the table's columns: a ``class`` column (and ``p_<class>`` probabilities) is
compared as classes (accuracy, balanced accuracy, AUC per class, confusion matrix), a ``value`` column as
numbers (MAE, bias, RMSE, R²).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepmed.data.manifest import Dataset
from deepmed.errors import DeepMedError
from deepmed.evaluation.case_level_metrics import classification_metrics, value_metrics
from deepmed.utils.atomic import atomic_path, write_text_atomic

RESULTS = "results.csv"
PROBABILITY_PREFIX = "p_"


@dataclass
class TableEvaluation:
    """Per-case rows, metrics over all cases, and (classes) the class names and confusion matrix."""

    rows: list[dict]
    metrics: dict
    classes: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)


def is_table(prediction) -> bool:
    """A ``.csv`` file, or a folder without images holding ``results.csv`` or only ``.csv`` files (a batch of
    label maps has a ``results.csv`` too: its uncertainty scores; its images are what is evaluated)."""
    from deepmed.io.image_io import is_image_file

    path = Path(prediction)
    if path.is_file():
        return path.suffix.lower() == ".csv"
    if not path.is_dir():
        return False
    files = [f for f in path.iterdir() if f.is_file()]
    if any(is_image_file(f) for f in files):
        return False
    return (path / RESULTS).is_file() or (bool(files) and all(f.suffix.lower() == ".csv" for f in files))


def read_predictions(prediction) -> list[dict]:
    """Rows with a ``case`` column: ``results.csv`` (or another table) as is; one-row files named by case."""
    path = Path(prediction)
    if path.is_dir() and (path / RESULTS).is_file():
        path = path / RESULTS
    if path.is_file():
        rows = _read_csv(path)
        if rows and "case" not in rows[0]:
            raise DeepMedError(f"{path}: expected a 'case' column (deepmed infer's results.csv), got "
                               f"{', '.join(rows[0])}")
        return rows
    rows = []
    for file in sorted(path.glob("*.csv")):
        rows.extend({"case": file.stem, **row} for row in _read_csv(file)[:1])
    return rows


def _read_csv(path: Path) -> list[dict]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DeepMedError(f"{path}: cannot read CSV ({exc})") from None


def evaluate_table(reference, prediction) -> TableEvaluation:
    """Compare the predictions table with the manifest's case values (matched by case id)."""
    dataset = Dataset.load(reference)
    predictions = read_predictions(prediction)
    values = {case.id: case.value for case in dataset.all_cases if case.value is not None}
    matched = [row for row in predictions if row["case"] in values]
    if not matched:
        example = next(iter(values), "?")
        raise DeepMedError(f"{prediction}: no predicted case has a value in {reference} (case ids like {example})"
                           if values else f"{reference}: no case has a 'value' to compare with")
    columns = list(matched[0])
    if "class" in columns:
        return _classes(matched, values, dataset.labels, columns, str(prediction))
    if "value" in columns:
        return _values(matched, values, str(prediction))
    raise DeepMedError(f"{prediction}: expected a 'class' or a 'value' column, got {', '.join(columns)}")


def _classes(rows: list[dict], values: dict, labels: dict[str, int], columns: list[str], where: str):
    classes = [c[len(PROBABILITY_PREFIX):] for c in columns if c.startswith(PROBABILITY_PREFIX)]
    classes = classes or sorted(labels, key=labels.get) or sorted({str(v) for v in values.values()})
    names_of = {value: name for name, value in labels.items()}
    reference, probabilities, table = [], [], []
    for row in rows:
        truth = names_of.get(values[row["case"]], values[row["case"]]) if isinstance(values[row["case"]], int) \
            else values[row["case"]]
        if str(truth) not in classes or row["class"] not in classes:
            bad = truth if str(truth) not in classes else row["class"]
            raise DeepMedError(f"{where}: case {row['case']}: class {bad!r} is not one of {', '.join(classes)}")
        index = classes.index(str(truth))
        if all(f"{PROBABILITY_PREFIX}{c}" in row for c in classes):
            p = [float(row[f"{PROBABILITY_PREFIX}{c}"]) for c in classes]
        else:  # no probabilities: the predicted class is certain
            p = [float(c == row["class"]) for c in classes]
        reference.append(index)
        probabilities.append(p)
        table.append({"case": row["case"], "reference": str(truth), "predicted": row["class"],
                      "correct": int(row["class"] == str(truth)),
                      **{f"{PROBABILITY_PREFIX}{c}": v for c, v in zip(classes, p)}})
    metrics = classification_metrics(reference, probabilities, classes)
    confusion = metrics.pop("confusion")
    return TableEvaluation(table, {"cases": len(table), **metrics}, classes, confusion)


def _values(rows: list[dict], values: dict, where: str) -> TableEvaluation:
    table = []
    for row in rows:
        truth = values[row["case"]]
        try:
            predicted = float(row["value"])
        except ValueError:
            raise DeepMedError(f"{where}: case {row['case']}: predicted value {row['value']!r} is not a number") \
                from None
        if not isinstance(truth, (int, float)):
            raise DeepMedError(f"{where}: case {row['case']}: reference value {truth!r} is not a number")
        table.append({"case": row["case"], "reference": float(truth), "predicted": predicted,
                      "error": predicted - float(truth)})
    metrics = value_metrics([r["reference"] for r in table], [r["predicted"] for r in table])
    return TableEvaluation(table, {"cases": len(table), **metrics})


# ---- output ------------------------------------------------------------------------------------------
def format_table_summary(result: TableEvaluation) -> str:
    """Metrics over the cases, then (classes) the confusion matrix."""
    lines = [f"{key:<22}{value:.4f}" if isinstance(value, float) else f"{key:<22}{value}"
             for key, value in result.metrics.items()]
    if result.classes:
        width = max(10, *(len(c) + 2 for c in result.classes))
        lines += ["", "confusion matrix (rows: reference, columns: prediction)",
                  " " * width + "".join(c.rjust(width) for c in result.classes)]
        lines += [name.ljust(width) + "".join(str(n).rjust(width) for n in row)
                  for name, row in zip(result.classes, result.confusion)]
    return "\n".join(lines)


def rows_to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def write_outputs(result: TableEvaluation, path: str | os.PathLike) -> list[Path]:
    """The per-case rows at ``path``; beside it ``<stem>_summary.json`` and, for classes,
    ``<stem>_confusion.csv`` and ``<stem>_confusion.png``."""
    path = Path(path)
    written = [write_text_atomic(path, rows_to_csv(result.rows))]
    stem = path.with_suffix("")
    summary = {**result.metrics, "classes": result.classes, "confusion": result.confusion} if result.classes \
        else result.metrics
    written.append(write_text_atomic(Path(f"{stem}_summary.json"), json.dumps(summary, indent=2) + "\n"))
    if result.classes:
        table = [["reference \\ prediction", *result.classes]] + \
            [[name, *map(str, row)] for name, row in zip(result.classes, result.confusion)]
        written.append(write_text_atomic(Path(f"{stem}_confusion.csv"), "\n".join(",".join(r) for r in table) + "\n"))
        written.append(confusion_png(result, Path(f"{stem}_confusion.png")))
    return written


def confusion_png(result: TableEvaluation, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(result.confusion)
    size = 1.2 + 0.6 * len(result.classes)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    shown = ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(result.classes)), result.classes, rotation=45, ha="right")
    ax.set_yticks(range(len(result.classes)), result.classes)
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    ax.set_title(f"balanced accuracy {result.metrics['balanced_accuracy']:.3f}", fontsize=9)
    fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    plt.close(fig)
    return path
