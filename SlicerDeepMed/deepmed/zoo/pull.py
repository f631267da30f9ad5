"""``deepmed zoo pull ID``: download a catalogue package (sha256-checked) and install it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.zoo.catalog import available_models, find_entry
from deepmed.zoo.download import download
from deepmed.zoo.library import InstalledModel, installed_models, library_dir, read_installed
from deepmed.zoo.package import import_package


def pull_model(model_id: str, *, catalogs: list[str] | None = None, library: Path | None = None,
               force: bool = False, progress=None) -> InstalledModel:
    """Install the newest catalogue version of ``model_id``; every URL (mirror) is tried in turn."""
    root = Path(library) if library is not None else library_dir(create=True)
    root.mkdir(parents=True, exist_ok=True)
    entries, warnings = available_models(catalogs, root)
    entry = find_entry(model_id, entries)
    installed = ", ".join(m.id for m in installed_models(root)) or "none"
    if entry is None:
        unreachable = f" (catalogues not read: {'; '.join(warnings)})" if warnings else ""
        raise DeepMedError(f"{model_id}: no such model in the catalogues{unreachable}; installed: {installed}")
    existing = read_installed(root / entry.id)
    if existing is not None and not force:
        if existing.card.get("version") == entry.version:
            return existing
        raise DeepMedError(f"{entry.id}: version {existing.card.get('version', '?')} is installed, the catalogue has "
                           f"{entry.version}; pass --force to replace it")
    failures = []
    with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as temporary:
        target = Path(temporary) / f"{entry.id}-{entry.version}.zip"
        for url in entry.urls:
            try:
                download(url, target, sha256=entry.sha256, size=entry.size, progress=progress)
                break
            except DeepMedError as exc:
                failures.append(str(exc))
        else:
            raise DeepMedError(f"{entry.id}: download failed, nothing installed: {' | '.join(failures)}; "
                               f"installed: {installed}")
        return import_package(target, library=root, model_id=entry.id, force=force)
