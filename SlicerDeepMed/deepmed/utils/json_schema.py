"""The engine's JSON Schemas (model card, catalogue) and their checking, one line per problem. The schema files
live in ``deepmed/zoo/schemas/`` (published copies in the repository's Resources/Schemas/); this module sits
below every package so the model card can be checked without importing the zoo."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "zoo" / "schemas"
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
