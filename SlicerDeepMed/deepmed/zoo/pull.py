"""``deepmed zoo pull ID[@VERSION]``: download a catalogue model (checksum-verified) and install it.

deepmed packages are checked by the catalogue's sha256 and size, MONAI bundles by their publisher's SHA-1
(then converted by the bundle importer). Either way the installed model records where it came from and
the sha256 of the archive installed (``ORIGIN.json``, itself listed in ``SHA256SUMS``).
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.zoo.catalog import CatalogEntry, available_models, find_entry, split_model_ref, versions_of
from deepmed.zoo.checksums import SUMS, sha256_of
from deepmed.zoo.download import download
from deepmed.zoo.library import InstalledModel, installed_models, library_dir, read_installed
from deepmed.zoo.package import import_package

ORIGIN = "ORIGIN.json"


def origin_record(entry: CatalogEntry, url: str, archive: Path) -> dict:
    """What ``ORIGIN.json`` says about a download: the catalogue, the URL, the checksums verified and the sha256."""
    record = {"id": entry.id, "version": entry.version, "format": entry.format, "catalog": entry.catalog, "url": url,
              "archive_sha256": sha256_of(archive), "archive_bytes": archive.stat().st_size,
              "installed": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    if entry.sha1:
        record["publisher_sha1"] = entry.sha1
    return record


def record_origin(model_dir: Path, origin: dict) -> None:
    """Write ``ORIGIN.json`` into a model folder and list it in its SHA256SUMS (the other lines kept as they are)."""
    (model_dir / ORIGIN).write_text(json.dumps(origin, indent=2) + "\n", encoding="utf-8")
    sums = model_dir / SUMS
    lines = [line for line in sums.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.endswith(f"  {ORIGIN}")] if sums.is_file() else []
    sums.write_text("\n".join(lines + [f"{sha256_of(model_dir / ORIGIN)}  {ORIGIN}"]) + "\n", encoding="utf-8")


def install_download(entry: CatalogEntry, url: str, archive: Path, root: Path, force: bool) -> InstalledModel:
    """Import a verified download into a staging library beside ``root``, record its origin, then move it in."""
    staging = archive.parent / "staging"
    try:
        model = import_package(archive, library=staging, model_id=entry.id)
    except DeepMedError:
        raise
    except Exception as exc:  # an importer that fails on a bundle it does not know: one line, not a traceback
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise DeepMedError(f"{entry.id} {entry.version}: cannot be imported ({type(exc).__name__}: {first}); "
                           "nothing installed") from None
    record_origin(model.path, origin_record(entry, url, archive))
    destination = root / entry.id
    if destination.exists():
        if not force:
            raise DeepMedError(f"{entry.id}: {destination} exists (not a finished model); remove it first or pass "
                               "--force")
        os.replace(destination, archive.parent / "replaced")
    os.replace(model.path, destination)
    return read_installed(destination)


def pull_model(model_id: str, *, catalogs: list[str] | None = None, library: Path | None = None,
               force: bool = False, progress=None) -> InstalledModel:
    """Install the newest catalogue version of ``model_id`` (or ``ID@VERSION``); every URL (mirror) is tried."""
    root = Path(library) if library is not None else library_dir(create=True)
    root.mkdir(parents=True, exist_ok=True)
    entries, warnings = available_models(catalogs, root)
    entry = find_entry(model_id, entries)
    installed = ", ".join(m.id for m in installed_models(root)) or "none"
    if entry is None:
        unreachable = f" (catalogues not read: {'; '.join(warnings)})" if warnings else ""
        versions = versions_of(split_model_ref(model_id)[0], entries)
        listed = f"; catalogued versions: {', '.join(versions)}" if versions else ""
        raise DeepMedError(f"{model_id}: no such model in the catalogues{unreachable}{listed}; installed: {installed}")
    existing = read_installed(root / entry.id)
    if existing is not None and not force:
        if existing.card.version == entry.version:
            return existing
        raise DeepMedError(f"{entry.id}: version {existing.card.version or '?'} is installed, the catalogue has "
                           f"{entry.version}; pass --force to replace it")
    failures = []
    with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as temporary:
        target = Path(temporary) / f"{entry.id}-{entry.version}.zip"
        for url in entry.urls:
            try:
                download(url, target, sha256=entry.sha256, sha1=entry.sha1, size=entry.size, progress=progress)
                break
            except DeepMedError as exc:
                failures.append(str(exc))
        else:
            raise DeepMedError(f"{entry.id}: download failed, nothing installed: {' | '.join(failures)}; "
                               f"installed: {installed}")
        return install_download(entry, url, target, root, force)
