"""Rows of results (dicts) as CSV text: columns in first-seen order, floats to 6 significant digits, lists
space-separated (a latent vector in one cell)."""

from __future__ import annotations

import csv
import io


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return " ".join(format_value(v) for v in value)
    return str(value)


def rows_to_csv(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: format_value(value) for key, value in row.items()})
    return buffer.getvalue()
