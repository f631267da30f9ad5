"""MONAI's own catalogue format, ``models/model_info.json`` of the Project-MONAI/model-zoo repository:

    {"spleen_ct_segmentation_v0.5.9": {"checksum": "<SHA-1 of the zip, 40 hex>", "source": "https://...zip"}, ...}

One key per published version of a bundle. It says nothing but where each zip is and its SHA-1, so the
entries it gives carry the bundle name as title and no task, modality or licence: those come from the
bundle itself when it is imported. The project's own catalogue (``deepmed-catalog/1``) lists the bundles
that import with their metadata (see ``bundle_catalog``).
"""

from __future__ import annotations

import re

from deepmed.errors import DeepMedError

FORMAT = "monai-bundle"
KEY_PATTERN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,99})_v(?P<version>[0-9][0-9A-Za-z.+-]{0,39})$")
SHA1_PATTERN = re.compile(r"^[0-9a-fA-F]{40}$")


def looks_like_model_info(document) -> bool:
    """A JSON object of ``<name>_v<version>`` keys, each an object with a ``checksum`` and a ``source``."""
    return (isinstance(document, dict) and bool(document) and "format" not in document
            and all(isinstance(v, dict) and "checksum" in v and "source" in v for v in document.values()))


def model_info_item(key: str, value: dict, where: str) -> dict:
    """One model_info.json item as a catalogue item (the fields of ``deepmed-catalog/1`` that it can fill)."""
    match = KEY_PATTERN.match(key)
    if match is None:
        raise DeepMedError(f"{where}: key {key!r}: expected '<bundle>_v<version>' (e.g. spleen_ct_segmentation_v0.5.9)")
    checksum, source = value.get("checksum"), value.get("source")
    if not isinstance(checksum, str) or not SHA1_PATTERN.match(checksum):
        raise DeepMedError(f"{where}: {key}: checksum should be a SHA-1 (40 hex digits), got {checksum!r}")
    if not isinstance(source, str) or not source.strip():
        raise DeepMedError(f"{where}: {key}: source should be the URL of the bundle zip, got {source!r}")
    name, version = match.group("name"), match.group("version")
    return {"id": name, "version": version, "format": FORMAT, "title": name,
            "description": f"MONAI Model Zoo bundle {name} {version}: task, labels and licence are read from the "
                           "bundle when it is imported",
            "task": "", "modality": "", "licence": "stated in the bundle", "urls": [source.strip()],
            "sha1": checksum.lower()}


def read_model_info(document: dict, where: str) -> list[dict]:
    """Every version of every bundle in a model_info.json document, as catalogue items."""
    return [model_info_item(key, value, where) for key, value in document.items()]
