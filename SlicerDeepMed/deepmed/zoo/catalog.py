"""Model catalogues: JSON lists of downloadable models.

Two formats are read, told apart by their content: deepmed's own (``"format": "deepmed-catalog/1"``,
schema ``model-catalog.schema.json``: deepmed packages checked by sha256, MONAI bundles by their
publisher's SHA-1) and MONAI's ``model_info.json`` (see ``model_info``). Catalogues come from the one
shipped with deepmed (or, when ``$DEEPMED_CATALOGS`` is set, from the ``;``-separated paths/URLs it lists
instead; empty: none), from ``LIBRARY/catalogs.txt`` (one path or URL per line, ``deepmed zoo
add-catalog`` appends to it) and from ``--catalog`` options. Package URLs may be relative to their catalogue.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.utils.json_files import parse_json
from deepmed.zoo.download import read_text
from deepmed.zoo.library import library_dir
from deepmed.zoo.model_info import looks_like_model_info, read_model_info
from deepmed.zoo.schemas import CATALOG_SCHEMA, check_document

BUNDLED_CATALOG = Path(__file__).with_name("catalog.json")
USER_CATALOGS = "catalogs.txt"
CATALOGS_VARIABLE = "DEEPMED_CATALOGS"


PACKAGE_FORMAT = "deepmed-package"
FIELDS = ("id", "version", "title", "description", "task", "modality", "licence", "size", "sha256", "sha1", "format",
          "weights_mb")


@dataclass
class CatalogEntry:
    """One downloadable version of a model. ``format``: ``deepmed-package`` (checked by ``sha256`` and ``size``) or
    ``monai-bundle`` (checked by its publisher's ``sha1``; converted on import)."""

    id: str
    version: str
    title: str
    description: str
    task: str
    modality: str
    licence: str
    urls: list[str]
    size: int | None = None
    sha256: str | None = None
    sha1: str | None = None
    format: str = PACKAGE_FORMAT
    weights_mb: float | None = None
    catalog: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def size_text(self) -> str:
        if self.size:
            return f"{self.size / 1e6:.1f} MB" if self.size >= 1e5 else f"{self.size / 1e3:.0f} kB"
        if self.weights_mb:  # the weights alone: the archive is larger
            return f"{self.weights_mb:.0f}+ MB"
        return "size unknown"

    @property
    def checksum_text(self) -> str:
        """What a download is checked against, for messages: ``sha256`` and/or ``SHA-1``."""
        return " and ".join(name for name, value in (("sha256", self.sha256), ("SHA-1", self.sha1)) if value)


def _absolute(url: str, base: str) -> str:
    if "://" in url or Path(url).is_absolute():
        return url
    if "://" in base:
        return urllib.parse.urljoin(base, url)
    return str((Path(base).parent / url).resolve())


def _entry(item: dict, source: str) -> CatalogEntry:
    known = {k: item[k] for k in FIELDS if k in item}
    extra = {k: v for k, v in item.items() if k not in known and k != "urls"}
    return CatalogEntry(**known, urls=[_absolute(u, source) for u in item["urls"]], catalog=source, extra=extra)


def load_catalog(source: str) -> list[CatalogEntry]:
    """Read and check one catalogue (a path or a URL): a deepmed catalogue or a MONAI model_info.json."""
    text = read_text(str(source))
    document = parse_json(text, str(source))
    if looks_like_model_info(document):
        items = read_model_info(document, str(source))
    elif isinstance(document, dict) and "format" in document:
        check_document(document, CATALOG_SCHEMA, str(source))
        items = document["models"]
    else:
        raise DeepMedError(f"{source}: not a model catalogue: expected a deepmed catalogue ('format': "
                           "'deepmed-catalog/1') or a MONAI model_info.json ('<bundle>_v<version>': "
                           "{'checksum': SHA-1, 'source': URL})")
    return [_entry(item, str(source)) for item in items]


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
    """Check a catalogue loads, then remember it in ``LIBRARY/catalogs.txt``; returns how many models it lists."""
    entries = load_catalog(source)
    root = Path(library) if library is not None else library_dir(create=True)
    root.mkdir(parents=True, exist_ok=True)
    path = root / USER_CATALOGS
    existing = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    if source not in existing:
        path.write_text("\n".join(existing + [source]) + "\n", encoding="utf-8")
    return len({e.id for e in entries})


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
    """Orders versions: numeric parts as numbers, ``1.10.0`` after ``1.9.2``."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in version.replace("-", ".").split(".")]


def split_model_ref(reference: str) -> tuple[str, str | None]:
    """``spleen_ct_segmentation@0.5.8`` -> (id, version); a bare id -> (id, None)."""
    model_id, _, version = reference.partition("@")
    return model_id, version or None


def find_entry(reference: str, entries: list[CatalogEntry]) -> CatalogEntry | None:
    """The newest version of a model id, or the version named as ``ID@VERSION``."""
    model_id, version = split_model_ref(reference)
    matches = [e for e in entries if e.id == model_id and version in (None, e.version)]
    return max(matches, key=lambda e: version_key(e.version)) if matches else None


def versions_of(model_id: str, entries: list[CatalogEntry]) -> list[str]:
    """Every catalogued version of ``model_id``, newest first."""
    return sorted({e.version for e in entries if e.id == model_id}, key=version_key, reverse=True)
