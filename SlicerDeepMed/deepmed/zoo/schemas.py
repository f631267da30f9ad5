"""JSON Schemas of model cards and catalogues: the one copy, shipped in the package (zoo/schemas/)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from deepmed.errors import DeepMedError

SCHEMA_DIR = Path(__file__).with_name("schemas")
CARD_SCHEMA = "model-card.schema.json"
CATALOG_SCHEMA = "model-catalog.schema.json"


@cache
def load_schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


def schema_problems(document, schema_name: str) -> list[str]:
    """Every schema violation, one line each: ``at inputs/0/normalization: 'foo' is not one of [...]``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        message = error.message if len(error.message) < 200 else error.message[:197] + "..."
        problems.append(f"at {where}: {message}")
    return problems


def check_document(document, schema_name: str, where: str) -> None:
    """Raise one error listing every problem when ``document`` fails its schema."""
    problems = schema_problems(document, schema_name)
    if problems:
        kind = "model card" if schema_name == CARD_SCHEMA else "catalogue"
        raise DeepMedError(f"{where}: {kind} fails its schema ({len(problems)} problem(s)): " + "; ".join(problems[:5])
                           + ("; ..." if len(problems) > 5 else ""))
