"""``deepmed zoo list | info ID | pull ID[@VERSION] | remove ID | verify [ID ...] | export MODEL -o X.zip |
import X.zip|BUNDLE [--trust-code] |
inspect BUNDLE | add-catalog SOURCE | catalog-from-bundles BUNDLE... --model-info X``: the model library,
catalogues (deepmed's own and MONAI's model_info.json) and portable packages."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.utils.json_files import read_json_object


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("zoo", help="model library, catalogues and model packages")
    parser.add_argument("--library", type=Path, help="library folder (default: $DEEPMED_LIBRARY or per-user)")
    parser.add_argument("--catalog", action="append", default=[], metavar="PATH_OR_URL",
                        help="also read this catalogue (repeatable)")
    parser.add_argument("--progress", default="tqdm", choices=["tqdm", "jsonl", "none"],
                        help="jsonl: one JSON event per line for programs (the Slicer panels)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="installed models and those the catalogues offer")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=run_list)
    info = actions.add_parser("info", help="everything known about one model")
    info.add_argument("model_id")
    info.set_defaults(run=run_info)
    pull = actions.add_parser("pull", help="download (checksum-verified) and install a catalogue model")
    pull.add_argument("model_id", help="catalogue id (newest version) or ID@VERSION")
    pull.add_argument("--force", action="store_true", help="replace an installed version")
    pull.set_defaults(run=run_pull)
    remove = actions.add_parser("remove", help="remove an installed model: NAME (every version) or NAME@N (one "
                                "version, not the promoted one)")
    remove.add_argument("model_id")
    remove.set_defaults(run=run_remove)
    verify = actions.add_parser("verify", help="re-check checksums and cards of installed models")
    verify.add_argument("model_ids", nargs="*", help="default: every installed model")
    verify.set_defaults(run=run_verify)
    export = actions.add_parser("export", help="write a model directory as a portable package")
    export.add_argument("model", help="model directory or library id")
    export.add_argument("-o", "--output", required=True, type=Path, help="NAME.zip (or a folder)")
    export.add_argument("--id", dest="model_id")
    export.add_argument("--version", default="1.0.0")
    export.add_argument("--title")
    export.add_argument("--description")
    export.add_argument("--licence", "--license", dest="licence", help="SPDX licence id, e.g. CC-BY-4.0")
    export.add_argument("--licence-file", type=Path, help="a LICENSE file to ship")
    export.add_argument("--citation", help="how to cite the model")
    export.add_argument("--author", action="append", default=[], dest="authors")
    export.add_argument("--force", action="store_true")
    export.set_defaults(run=run_export)
    importing = actions.add_parser("import", help="install a package (.zip or folder), a MONAI bundle or an "
                                   "nnU-Net v2 result folder")
    importing.add_argument("source", type=Path)
    importing.add_argument("--checkpoint", choices=["auto", "final", "best"], default="auto",
                           help="nnU-Net: checkpoint_final.pth or checkpoint_best.pth (auto: final, else best)")
    importing.add_argument("--id", dest="model_id", help="install under this id")
    importing.add_argument("--force", action="store_true", help="replace an installed model with this id")
    importing.add_argument("--set", dest="bundle_values", action="append", default=[], metavar="KEY=VALUE",
                           help="MONAI bundle: the value of a config key that holds a $ expression, e.g. "
                           "--set 'preprocessing#transforms#3#pixdim=[1.5, 1.5, 1.5]' (repeatable)")
    importing.add_argument("--trust-code", action="store_true", help="MONAI bundle: if its pipeline needs its own "
                           "code (scripts/, $ expressions), run it through MONAI (see 'zoo inspect' first)")
    importing.set_defaults(run=run_import)
    inspect = actions.add_parser("inspect", help="MONAI bundle: the code --trust-code would run (nothing is run)")
    inspect.add_argument("source", type=Path, help="bundle folder or .zip")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(run=run_inspect)
    publish = actions.add_parser("publish", help="make a trained model a verified package in the library "
                                 "(and optionally a .zip to share)")
    publish.add_argument("model", help="model directory or library id")
    publish.add_argument("-o", "--output", type=Path, help="also keep the package as this .zip")
    for option in ("--id", "--title", "--description", "--citation"):
        publish.add_argument(option, dest="model_id" if option == "--id" else option[2:])
    publish.add_argument("--version", default="1.0.0")
    publish.add_argument("--licence", "--license", dest="licence", required=True, help="SPDX licence id")
    publish.set_defaults(run=run_publish)
    add = actions.add_parser("add-catalog", help="remember a catalogue (path or URL) in the library: a deepmed "
                             "catalogue or MONAI's model_info.json")
    add.add_argument("source")
    add.set_defaults(run=run_add_catalog)
    bundles = actions.add_parser("catalog-from-bundles", help="catalogue entries for the MONAI bundles that import "
                                 "(title, task, licence... from the bundles; URL and SHA-1 from model_info.json)")
    bundles.add_argument("bundles", nargs="+", type=Path, help="bundle folders (configs/metadata.json; weights "
                         "optional)")
    bundles.add_argument("--model-info", required=True, help="MONAI's models/model_info.json (path or URL)")
    bundles.add_argument("--into", type=Path, help="add the entries to this deepmed catalogue (replacing those of "
                         "the same id; created if missing) instead of printing them")
    bundles.add_argument("--run-check", action="store_true", help="also run each imported network once on a patch "
                         "of zeros (leaves out bundles that import but cannot run here; slow for large patches)")
    bundles.set_defaults(run=run_catalog_from_bundles)


def _rows(args) -> tuple[list[dict], list[str]]:
    from deepmed.zoo.catalog import available_models, version_key
    from deepmed.zoo.library import installed_models

    installed = {m.id: m for m in installed_models(args.library)}
    entries, warnings = available_models(args.catalog, args.library)
    rows: dict[str, dict] = {}
    for entry in entries:
        row = rows.setdefault(entry.id, {"id": entry.id, "status": "available"})
        if "version" not in row or version_key(entry.version) > version_key(row["version"]):
            row.update(version=entry.version, task=entry.task or "?", size=entry.size_text, licence=entry.licence,
                       title=entry.title, format=entry.format, checksum=entry.checksum_text,
                       description=entry.description)
    for model_id, model in installed.items():
        card = model.card
        row = rows.setdefault(model_id, {"id": model_id, "title": model.title})
        available = row.get("version")
        version = card.version or "trained here"
        row.update(status="installed" if not available or available == version else f"installed (update {available})",
                   version=version, task=model.application, licence=card.licence or "-",
                   size=f"{(model.path / 'model.safetensors').stat().st_size / 1e6:.1f} MB",
                   trusted=bool(card.trust_code))
    return sorted(rows.values(), key=lambda r: r["id"]), warnings


def _emit(args, event: str, **fields) -> bool:
    """Send one JSON-lines event when ``--progress jsonl``; True when it was sent."""
    if args.progress != "jsonl":
        return False
    from deepmed.progress import JsonLinesReporter

    JsonLinesReporter().emit(event, **fields)
    return True


def _installed_event(args, model) -> None:
    if not _emit(args, "installed", id=model.id, version=model.card.version or "", path=str(model.path)):
        print(f"{model.id} {model.card.version or ''} installed in {model.path}")


def run_list(args) -> int:
    from deepmed.zoo.library import library_dir

    rows, warnings = _rows(args)
    if _emit(args, "models", library=str(args.library or library_dir()), models=rows, warnings=warnings):
        return 0
    if args.json:
        print(json.dumps({"library": str(args.library or library_dir()), "models": rows, "warnings": warnings},
                         indent=2))
        return 0
    for warning in warnings:
        print(f"warning: catalogue not read: {warning}", file=sys.stderr)
    columns = ["id", "version", "task", "size", "licence", "status"]
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))
    if not rows:
        print(f"(no models: the library {args.library or library_dir()} is empty and the catalogues offer none)")
    return 0


def run_info(args) -> int:
    from deepmed.zoo.catalog import available_models, find_entry
    from deepmed.zoo.library import library_dir, read_installed

    root = args.library or library_dir()
    model = read_installed(root / args.model_id.partition("@")[0])
    entries, warnings = available_models(args.catalog, args.library)
    entry = find_entry(args.model_id, entries)
    if model is None and entry is None:
        raise DeepMedError(f"{args.model_id}: neither installed in {root} nor in a catalogue"
                           + (f" (not read: {'; '.join(warnings)})" if warnings else ""))
    if entry is not None:
        from deepmed.zoo.catalog import versions_of

        checksums = "".join(f"\n  {name} {value}" for name, value in (("sha256", entry.sha256),
                                                                     ("SHA-1 (publisher's)", entry.sha1)) if value)
        older = [v for v in versions_of(entry.id, entries) if v != entry.version]
        print(f"catalogue: {entry.title} {entry.version} ({entry.task or '?'}, {entry.modality or '?'}), "
              f"{entry.size_text}, licence {entry.licence}, {entry.format}\n  {entry.description}\n"
              f"  from {entry.catalog}\n  url {entry.urls[0]}{checksums}"
              + (f"\n  other versions ({entry.id}@VERSION): {', '.join(older)}" if older else ""))
    if model is not None:
        from deepmed.zoo.package import card_summary
        from deepmed.zoo.pull import ORIGIN

        print(f"installed in {model.path}:\n" + card_summary(model.card))
        if (model.path / ORIGIN).is_file():
            origin = json.loads((model.path / ORIGIN).read_text(encoding="utf-8"))
            print(f"downloaded from {origin.get('url')} on {origin.get('installed')}; archive sha256 "
                  f"{origin.get('archive_sha256')}")
    return 0


def run_pull(args) -> int:
    from deepmed.zoo.pull import pull_model

    progress = {"tqdm": None, "none": False}.get(args.progress)
    if args.progress == "jsonl":
        last = [0]

        def progress(done, total):  # at most ~50 events per download
            if total is None or done == total or done - last[0] >= total / 50:
                last[0] = done
                _emit(args, "download", id=args.model_id, done=done, total=total)
    model = pull_model(args.model_id, catalogs=args.catalog, library=args.library, force=args.force,
                       progress=progress)
    _installed_event(args, model)
    return 0


def run_remove(args) -> int:
    from deepmed.zoo.package import remove_model

    for path in remove_model(args.model_id, args.library):
        print(f"removed {path}")
    return 0


def run_verify(args) -> int:
    from deepmed.zoo.library import installed_models, unusable_models
    from deepmed.zoo.package import verify_installed

    models, unusable = installed_models(args.library, all_versions=True), unusable_models(args.library)
    if args.model_ids:
        unknown = sorted(set(args.model_ids) - {m.id for m in models} - {model_id for model_id, _ in unusable})
        if unknown:
            raise DeepMedError(f"not installed: {', '.join(unknown)}")
        models = [m for m in models if m.id in args.model_ids]
        unusable = [(model_id, why) for model_id, why in unusable if model_id in args.model_ids]
    for model_id, why in unusable:
        print(f"{model_id}: 1 problem(s)\n  problem: {why}")
    failed = len(unusable)
    for model in models:
        problems = verify_installed(model)
        checksums = "checksums OK" if (model.path / "SHA256SUMS").is_file() else "no checksums (trained here)"
        print(f"{model.id}: " + ("OK, " + checksums if not problems else f"{len(problems)} problem(s)"))
        for problem in problems:
            print(f"  problem: {problem}")
        failed += bool(problems)
    return 2 if failed else 0


def run_export(args) -> int:
    from deepmed.zoo.library import resolve_model
    from deepmed.zoo.package import export_package

    out = export_package(resolve_model(args.model, args.library), args.output, model_id=args.model_id,
                         version=args.version, title=args.title, description=args.description, licence=args.licence,
                         licence_file=args.licence_file, citation=args.citation, authors=args.authors, force=args.force)
    print(f"package written to {out}")
    return 0


def run_import(args) -> int:
    from deepmed.zoo.bundle_config import parse_values
    from deepmed.zoo.package import import_package

    model = import_package(args.source, library=args.library, model_id=args.model_id, force=args.force,
                           bundle_values=parse_values(args.bundle_values), checkpoint=args.checkpoint,
                           trust_code=args.trust_code)
    _installed_event(args, model)
    return 0


def run_inspect(args) -> int:
    import tempfile

    from deepmed.zoo.bundle import is_monai_bundle
    from deepmed.zoo.package import safe_extract
    from deepmed.zoo.trusted_bundle import inspect_bundle

    with tempfile.TemporaryDirectory(prefix="deepmed-inspect-") as scratch:
        bundle = Path(args.source)
        if bundle.is_file() and zipfile.is_zipfile(bundle):  # a bundle as the zoo ships it
            bundle = safe_extract(bundle, Path(scratch))
        if not is_monai_bundle(bundle):
            raise DeepMedError(f"{args.source}: not a MONAI bundle (configs/metadata.json missing)")
        report = inspect_bundle(bundle, str(args.source))
    report["bundle"] = str(args.source)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['name']}: {report['summary']}")
    for item in report["expressions"]:
        print(f"  expression {item['key']}: {item['code'][:150]}")
    for item in report["targets"]:
        print(f"  class      {item['key']}: {item['target']}")
    for line in report["imports"]:
        print(f"  import     {line.lstrip('$').strip()}")
    for name in report["scripts"]:
        print(f"  file       {name}")
    return 0


def run_publish(args) -> int:
    import tempfile

    from deepmed.zoo.library import library_dir, resolve_model
    from deepmed.zoo.package import export_package, import_package

    source = resolve_model(args.model, args.library)
    root = args.library or library_dir(create=True)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".publish-", dir=root) as temporary:
        package = export_package(source, args.output or Path(temporary) / "package.zip", model_id=args.model_id or
                                 source.name, version=args.version, title=args.title, description=args.description,
                                 licence=args.licence, citation=args.citation)
        model = import_package(package, library=root, model_id=args.model_id or source.name, force=True)
    _installed_event(args, model)
    return 0


def run_add_catalog(args) -> int:
    from deepmed.zoo.catalog import add_catalog

    print(f"{args.source}: {add_catalog(args.source, args.library)} model(s); remembered in the library")
    return 0


def run_catalog_from_bundles(args) -> int:
    from deepmed.utils.atomic import write_text_atomic
    from deepmed.zoo.bundle_catalog import entries_from_bundles, merge_into
    from deepmed.zoo.schemas import CATALOG_SCHEMA, check_document

    entries, skipped = entries_from_bundles(args.bundles, args.model_info, run=args.run_check)
    for line in skipped:
        print(f"left out: {line}", file=sys.stderr)
    if args.into is None:
        print(json.dumps({"format": "deepmed-catalog/1", "models": entries}, indent=2))
        return 0
    catalogue = {"format": "deepmed-catalog/1", "models": []}
    if args.into.is_file():
        catalogue = read_json_object(args.into, "the catalogue")
    catalogue = merge_into(catalogue, entries)
    check_document(catalogue, CATALOG_SCHEMA, str(args.into))
    write_text_atomic(args.into, json.dumps(catalogue, indent=2, ensure_ascii=False) + "\n")
    for entry in entries:
        print(f"{entry['id']} {entry['version']}: {entry['task']}, {entry['modality']}, {entry['licence']}, "
              f"{entry['weights_mb']} MB weights -> {args.into}")
    return 0
