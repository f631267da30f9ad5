"""Portable model packages: a folder or a single .zip holding

    model_card.json   what the model expects and outputs (validated against model-card.schema.json)
    model.safetensors the weights (never a pickle)
    config.yaml       the resolved training configuration (when trained here)
    LICENSE           the licence; CITATION.txt how to cite it (when given)
    README.md         a human summary of the card; metrics.csv / curves.png when trained here
    SHA256SUMS        the sha256 of every other file

Nothing in a package is executed: cards are data checked by the schema, weights are safetensors.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.model.card import ModelCard, check_schema
from deepmed.model.directory import CARD, CONFIG, WEIGHTS, read_card
from deepmed.utils.json_files import read_json_object
from deepmed.zoo.checksums import SUMS, verify_sums, write_sums
from deepmed.zoo.library import InstalledModel, check_model_id, library_dir, read_installed
from deepmed.zoo.schemas import CARD_SCHEMA

OPTIONAL_FILES = (CONFIG, "metrics.csv", "curves.png")
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".npy", ".joblib")
MAX_UNPACKED_BYTES = 20 * 1024 ** 3
MAX_COMPRESSION_RATIO = 200


# ---- export ------------------------------------------------------------------------------------------
def export_package(model_dir, output, *, model_id: str | None = None, version: str = "1.0.0",
                   title: str | None = None, description: str | None = None, licence: str | None = None,
                   licence_file=None, citation: str | None = None, authors: list[str] | None = None,
                   force: bool = False) -> Path:
    """Write ``model_dir`` as a package: ``output`` ending in .zip gives a zip, anything else a folder."""
    model_dir, output = Path(model_dir), Path(output)
    card = read_card(model_dir)
    if card.trust_code:
        raise DeepMedError(f"{model_dir}: runs a MONAI bundle's own code (trusted at import); share the bundle itself "
                           "and import it with --trust-code")
    if output.exists() and not force:
        raise DeepMedError(f"{output}: already exists; pass --force to overwrite it")
    if not output.parent.is_dir():
        raise DeepMedError(f"{output}: folder {output.parent} does not exist")
    licence = licence or card.licence
    if not licence and licence_file is None:
        raise DeepMedError(f"{model_dir}: a package needs a licence: pass --licence (an SPDX id such as CC-BY-4.0) "
                           "or --licence-file LICENSE")
    card = card.with_values(id=check_model_id(model_id or card.id or model_dir.name), version=version,
                            title=title or card.title or model_dir.name, licence=licence or Path(licence_file).name,
                            description=description or card.description, citation=citation or card.citation,
                            authors=tuple(authors) if authors else card.authors)
    card = card.with_values(memory=memory_estimate(card, (model_dir / WEIGHTS).stat().st_size))
    check_schema(card.to_dict(), str(model_dir / CARD))
    check_safetensors(model_dir / WEIGHTS)
    with tempfile.TemporaryDirectory(prefix=".deepmed-export-", dir=output.parent) as temporary:
        staging = Path(temporary) / "package"
        staging.mkdir()
        shutil.copy2(model_dir / WEIGHTS, staging / WEIGHTS)
        for name in OPTIONAL_FILES:
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, staging / name)
        card.write(staging)
        if licence_file is not None:
            shutil.copyfile(licence_file, staging / "LICENSE")
        else:
            (staging / "LICENSE").write_text(f"This model is distributed under the {licence} licence.\n"
                                             f"See https://spdx.org/licenses/{licence}.html\n", encoding="utf-8")
        if card.citation:
            (staging / "CITATION.txt").write_text(card.citation + "\n", encoding="utf-8")
        (staging / "README.md").write_text(card_summary(card), encoding="utf-8")
        write_sums(staging)
        if output.suffix.lower() == ".zip":
            built = Path(temporary) / "package.zip"
            _zip_folder(staging, built)
        else:
            built = staging
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        os.replace(built, output)
    return output


def _zip_folder(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                method = zipfile.ZIP_STORED if path.suffix in (".safetensors", ".png") else zipfile.ZIP_DEFLATED
                archive.write(path, path.relative_to(folder).as_posix(), compress_type=method)


def memory_estimate(card: ModelCard, weights_bytes: int) -> dict:
    """Weights size and a rough inference memory estimate (one sliding-window batch of activations)."""
    args = card.network.args if card.network is not None else {}
    first = args.get("channels") or args.get("features") or \
        [args.get("init_filters") or args.get("feature_size") or 32]
    width = int(first[0]) if isinstance(first, list) else int(first)
    voxels = 1
    for size in card.patch_size or (card.output_grid or {}).get("size") or [64, 64, 64]:
        voxels *= int(size)
    batch = int(card.inference.get("sw_batch_size", 2))
    activations = voxels * batch * width * 4 * 12  # float32, ~12 feature maps of the first width alive at once
    return {"weights_mb": round(weights_bytes / 1e6, 1), "inference_mb": round((activations + 3 * weights_bytes) / 1e6),
            "note": "rough estimate for one sliding-window batch; whole-volume buffers add image size x labels x 4 B"}


def card_summary(card: ModelCard) -> str:
    spacing = list(card.spacing) if card.spacing else None
    patch = list(card.patch_size) if card.patch_size else None
    lines = [f"# {card.title or card.id or 'model'} ({card.version or ''})", "",
             card.description or "", "", f"* Application: {card.application}",
             "* Inputs: " + ", ".join(f"{i.name} ({i.modality or '?'}, {i.normalization})" for i in card.inputs),
             f"* Spacing (mm): {spacing}; patch (voxels): {patch}",
             f"* Network: {card.network.name if card.network else '?'}", f"* Licence: {card.licence or '?'}"]
    if card.trust_code:
        from deepmed.zoo.trusted_bundle import CodeToRun

        lines.append(f"* Trusted code (runs through MONAI): {CodeToRun(**card.trusted_code).summary()}")
    if card.labels:
        lines.append("* Labels: " + ", ".join(f"{label.value}={label.name}" for label in card.labels))
    validation = card.validation
    if validation.get("best") is not None:
        lines.append(f"* Validation {validation.get('key_metric')}: {validation['best']:.4f}")
    if card.citation:
        lines += ["", "## Citation", "", card.citation]
    return "\n".join(lines) + "\n"


# ---- checks --------------------------------------------------------------------------------------------
def check_safetensors(path: Path) -> list[str]:
    """Open the weights as safetensors (header only, nothing executed); returns the tensor names."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as weights:
            return list(weights.keys())
    except Exception as exc:  # a pickle or garbage in a .safetensors file lands here, unexecuted
        raise DeepMedError(f"{path}: not a valid safetensors file ({str(exc).splitlines()[0][:120]})") from None


def check_package_folder(folder: Path, where: str) -> ModelCard:
    """Every check an installable package must pass; returns its card."""
    pickles = [p.name for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise DeepMedError(f"{where}: holds pickle-based files ({', '.join(sorted(pickles))}); deepmed packages "
                           "carry weights as safetensors only (pickles can run code when loaded)")
    problems = verify_sums(folder)
    if problems:
        raise DeepMedError(f"{where}: checksum verification failed: " + "; ".join(p.replace(str(folder) + os.sep, "")
                                                                                for p in problems[:5]))
    card_path = folder / CARD
    card = ModelCard.from_dict(read_json_object(card_path, "the model card"), f"{where}: {CARD}")
    if not (folder / WEIGHTS).is_file():
        raise DeepMedError(f"{where}: {WEIGHTS} missing")
    check_safetensors(folder / WEIGHTS)
    return card


# ---- import ------------------------------------------------------------------------------------------
def safe_extract(archive_path: Path, target: Path) -> Path:
    """Extract a zip refusing absolute paths, '..', links and zip bombs; returns the package root."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DeepMedError(f"{archive_path}: not a readable zip file ({exc})") from None
    with archive:
        members = archive.infolist()
        total = sum(m.file_size for m in members)
        if total > MAX_UNPACKED_BYTES:
            raise DeepMedError(f"{archive_path}: unpacks to {total / 1e9:.1f} GB, more than the "
                               f"{MAX_UNPACKED_BYTES / 1e9:.0f} GB a model package may hold")
        for member in members:
            name = member.filename
            parts = Path(name).parts
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise DeepMedError(f"{archive_path}: unsafe path in archive: {name!r}")
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise DeepMedError(f"{archive_path}: symbolic link in archive: {name!r}")
            if member.compress_size and member.file_size / member.compress_size > MAX_COMPRESSION_RATIO \
                    and member.file_size > 100e6:
                raise DeepMedError(f"{archive_path}: {name!r} is suspiciously compressed (zip bomb?)")
        try:
            archive.extractall(target)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DeepMedError(f"{archive_path}: damaged archive ({exc})") from None
    entries = [p for p in target.iterdir()]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target


def import_package(source, *, library: Path | None = None, model_id: str | None = None,
                   force: bool = False, bundle_values: dict | None = None,
                   checkpoint: str = "auto", trust_code: bool = False) -> InstalledModel:
    """Install a package (.zip or folder), a MONAI bundle or an nnU-Net v2 result folder into the library,
    after every check passed. ``bundle_values``: values of a bundle's config keys that hold ``$`` expressions
    (``--set``). ``checkpoint`` (nnU-Net): ``auto`` (final, else best), ``final`` or ``best``. ``trust_code``:
    a MONAI bundle that needs its own code may run it (``deepmed.zoo.trusted_bundle``)."""
    from deepmed.zoo.nnunet_convert import convert as convert_nnunet
    from deepmed.zoo.nnunet_import import is_nnunet_folder

    source = Path(source)
    if not source.exists():
        raise DeepMedError(f"{source}: not found")
    root = Path(library) if library is not None else library_dir(create=True)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".import-", dir=root) as temporary:
        unpacked = Path(temporary) / "unpacked"
        unpacked.mkdir()
        card = None
        if is_nnunet_folder(source):  # read in place: checkpoints are large and converted, not copied
            package = Path(temporary) / "converted"
            card = ModelCard.from_dict(convert_nnunet(Path(source), package, str(source), checkpoint),
                                       str(source))
        elif source.is_dir():
            package = unpacked / "package"
            shutil.copytree(source, package, symlinks=False)
        else:
            package = safe_extract(source, unpacked)
        from deepmed.zoo.bundle import is_monai_bundle

        if card is None and is_monai_bundle(package):
            from deepmed.zoo.bundle import convert_bundle
            from deepmed.zoo.trusted_card import convert_with_trust

            converted = Path(temporary) / "converted"
            card = ModelCard.from_dict(convert_with_trust(package, converted, str(source), bundle_values, trust_code,
                                                          convert_bundle), str(source))
            package = converted
        elif card is None:
            if bundle_values:
                raise DeepMedError(f"{source}: --set gives values to MONAI bundle configs; this is a deepmed package")
            card = check_package_folder(package, str(source))
            from deepmed.applications.trusted_bundle import APPLICATION as TRUSTED

            if card.trust_code or card.application == TRUSTED:
                raise DeepMedError(f"{source}: a model that runs a MONAI bundle's own code is made only by importing "
                                   "the bundle with --trust-code, not installed from a package")
        model_id = check_model_id(model_id or card.id or source.stem)
        destination = root / model_id
        if destination.exists():
            if not force:
                installed = read_installed(destination)
                version = (installed.card.version or "trained here") if installed else "unknown"
                raise DeepMedError(f"{model_id}: already installed in {root} (version {version}); remove it first "
                                   "or pass --force")
            os.replace(destination, Path(temporary) / "replaced")
        os.replace(package, destination)
    return read_installed(destination)


def remove_model(model_id: str, library: Path | None = None) -> list[Path]:
    """Remove ``NAME`` (every version and its ``NAME.versions.json``) or ``NAME@N`` (that version only; the
    promoted version is refused: remove ``NAME`` to drop the whole model). Returns the folders removed."""
    from deepmed.zoo.library import installed_models
    from deepmed.zoo.versions import available_versions, promoted_version, record_path, split_version, version_dir

    root = Path(library) if library is not None else library_dir()
    name, version = split_version(model_id)
    check_model_id(name)
    existing = available_versions(root, name)
    if not existing or (version is not None and version not in existing):
        known = ", ".join(m.id for m in installed_models(root)) or "none"
        held = f" (its versions: {', '.join(f'{name}@{v}' for v in existing)})" if existing else ""
        raise DeepMedError(f"{model_id}: not installed in {root}{held} (installed: {known})")
    if version is not None and version == promoted_version(root, name) and len(existing) > 1:
        raise DeepMedError(f"{model_id}: the promoted version of {name} ({name} runs it); remove another version "
                           f"or the whole model ('deepmed zoo remove {name}')")
    versions = existing if version is None else [version]
    removed = [version_dir(root, name, v) for v in versions]
    with tempfile.TemporaryDirectory(prefix=".remove-", dir=root) as temporary:
        for number, path in zip(versions, removed):
            os.replace(path, Path(temporary) / f"removed-{number}")  # gone at once; deleted with the temporary folder
        if set(versions) == set(existing) and record_path(root, name).is_file():
            os.replace(record_path(root, name), Path(temporary) / "versions.json")
    return removed


def verify_installed(model: InstalledModel) -> list[str]:
    """Problems of an installed model: checksums (packages) and the card schema (every model)."""
    from deepmed.zoo.schemas import schema_problems

    problems = []
    if (model.path / SUMS).is_file():
        problems += verify_sums(model.path)
    problems += [f"{model.path / CARD}: {p}" for p in schema_problems(model.card.to_dict(), CARD_SCHEMA)]
    try:
        check_safetensors(model.path / WEIGHTS)
    except DeepMedError as exc:
        problems.append(str(exc))
    return problems
