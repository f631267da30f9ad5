"""Model catalogues: JSON lists of downloadable packages (schema ``model-catalog.schema.json``).

Catalogues come from the one shipped with deepmed (or, when ``$DEEPMED_CATALOGS`` is set, from the
``;``-separated paths/URLs it lists instead; empty: none), from ``LIBRARY/catalogs.txt`` (one path or URL
per line, ``deepmed zoo add-catalog`` appends to it) and from ``--catalog`` options. Package URLs may be
relative to their catalogue.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.zoo.download import read_text
from deepmed.zoo.library import library_dir
from deepmed.zoo.schemas import CATALOG_SCHEMA, check_document

BUNDLED_CATALOG = Path(__file__).with_name("catalog.json")
USER_CATALOGS = "catalogs.txt"
CATALOGS_VARIABLE = "DEEPMED_CATALOGS"


@dataclass
class CatalogEntry:
    id: str
    version: str
    title: str
    description: str
    task: str
    modality: str
    licence: str
    urls: list[str]
    size: int
    sha256: str
    catalog: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def size_text(self) -> str:
        return f"{self.size / 1e6:.1f} MB" if self.size >= 1e5 else f"{self.size / 1e3:.0f} kB"


def _absolute(url: str, base: str) -> str:
    if "://" in url or Path(url).is_absolute():
        return url
    if "://" in base:
        return urllib.parse.urljoin(base, url)
    return str((Path(base).parent / url).resolve())


def load_catalog(source: str) -> list[CatalogEntry]:
    """Read and schema-check one catalogue (a path or a URL)."""
    text = read_text(str(source))
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeepMedError(f"{source}: JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    check_document(document, CATALOG_SCHEMA, str(source))
    entries = []
    for item in document["models"]:
        known = {k: item[k] for k in ("id", "version", "title", "description", "task", "modality", "licence", "size",
                                      "sha256")}
        extra = {k: v for k, v in item.items() if k not in known and k != "urls"}
        entries.append(CatalogEntry(**known, urls=[_absolute(u, str(source)) for u in item["urls"]],
                                    catalog=str(source), extra=extra))
    return entries


def catalog_sources(extra: list[str] | None = None, library: Path | None = None) -> list[str]:
    root = Path(library) if library is not None else library_dir()
    if CATALOGS_VARIABLE in os.environ:
        sources = [s.strip() for s in os.environ[CATALOGS_VARIABLE].split(";") if s.strip()]
    else:
        sources = [str(BUNDLED_CATALOG)]
    user_file = root / USER_CATALOGS
    if user_file.is_file():
        sources += [line.strip() for line in user_file.read_text(encoding="utf-8").splitlines()
                    if line.strip() and not line.startswith("#")]
    return list(dict.fromkeys(sources + list(extra or [])))


def add_catalog(source: str, library: Path | None = None) -> int:
    """Check a catalogue loads, then remember it in ``LIBRARY/catalogs.txt``; returns its model count."""
    entries = load_catalog(source)
    root = Path(library) if library is not None else library_dir(create=True)
    root.mkdir(parents=True, exist_ok=True)
    path = root / USER_CATALOGS
    existing = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    if source not in existing:
        path.write_text("\n".join(existing + [source]) + "\n", encoding="utf-8")
    return len(entries)


def available_models(extra: list[str] | None = None, library: Path | None = None):
    """All catalogue entries and the catalogues that could not be read (offline, broken): (entries, warnings)."""
    entries, warnings = [], []
    for source in catalog_sources(extra, library):
        try:
            entries.extend(load_catalog(source))
        except DeepMedError as exc:
            warnings.append(str(exc))
    return entries, warnings


def version_key(version: str):
    return [int(p) if p.isdigit() else p for p in version.replace("-", ".").split(".")]


def find_entry(model_id: str, entries: list[CatalogEntry]) -> CatalogEntry | None:
    """The newest version of ``model_id`` among the entries."""
    matches = [e for e in entries if e.id == model_id]
    return max(matches, key=lambda e: version_key(e.version)) if matches else None
