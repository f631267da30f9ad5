"""JSON Schemas of model cards and catalogues: the one copy, shipped in the package (zoo/schemas/)."""

from __future__ import annotations

from deepmed.errors import DeepMedError
from deepmed.utils.json_schema import CARD_SCHEMA, CATALOG_SCHEMA, SCHEMA_DIR, load_schema, schema_problems

__all__ = ["CARD_SCHEMA", "CATALOG_SCHEMA", "SCHEMA_DIR", "check_document", "load_schema", "schema_problems"]


def check_document(document, schema_name: str, where: str) -> None:
    """Raise one error listing every problem when ``document`` fails its schema."""
    problems = schema_problems(document, schema_name)
    if problems:
        kind = "model card" if schema_name == CARD_SCHEMA else "catalogue"
        raise DeepMedError(f"{where}: {kind} fails its schema ({len(problems)} problem(s)): " + "; ".join(problems[:5])
                           + ("; ..." if len(problems) > 5 else ""))
