"""Reading the user's JSON files with one-line errors that name the file and the problem (missing, unreadable,
not JSON at line/column, not an object) instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepmed.errors import DeepMedError


def parse_json(text: str, where: str, error: type[DeepMedError] = DeepMedError) -> Any:
    """``text`` parsed; a syntax error becomes ``where: JSON syntax error at line L, column C: ...``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def read_json(path: str | Path, what: str, error: type[DeepMedError] = DeepMedError) -> Any:
    """The JSON value in ``path`` (``what`` says what the file is, e.g. "the model card"), or ``error`` saying
    the file is missing, unreadable or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what} ({exc})") from None
    return parse_json(text, str(path), error)


def read_json_object(path: str | Path, what: str, error: type[DeepMedError] = DeepMedError) -> dict:
    """As :func:`read_json`, and the value must be a JSON object (a dict)."""
    value = read_json(path, what, error)
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object ({what}), got {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")
