"""Catalogue entries for MONAI Model Zoo bundles, made from the bundles themselves (``deepmed zoo
catalog-from-bundles``), so that no entry is typed by hand.

Each bundle folder (``configs/metadata.json`` + its inference config, weights optional) is imported into a
temporary library by the bundle importer: bundles it refuses are left out (with the reason), and the entry
is what the importer made of the others (task, inputs, labels) plus the bundle's metadata (title,
description, modality, licence, references). Where the bundle ships without weights, random weights of the
right shape are built from ``network_def`` (plain values, a network the engine knows; nothing is evaluated).
The download URL and the publisher's SHA-1 come from MONAI's ``model_info.json`` for the bundle's version.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.model.card import ModelCard
from deepmed.model.directory import WEIGHTS
from deepmed.zoo.download import read_text
from deepmed.zoo.model_info import FORMAT, looks_like_model_info, read_model_info

#: Phrases of common licence texts and their SPDX ids, most specific first.
LICENCE_PHRASES = [
    (r"Attribution-NonCommercial-ShareAlike 4\.0", "CC-BY-NC-SA-4.0"),
    (r"Attribution-NonCommercial 4\.0", "CC-BY-NC-4.0"),
    (r"Attribution-ShareAlike 4\.0", "CC-BY-SA-4.0"),
    (r"Attribution 4\.0 International", "CC-BY-4.0"),
    (r"Apache License,?\s+Version 2\.0", "Apache-2.0"),
    (r"\bMIT License\b|Permission is hereby granted, free of charge", "MIT"),
    (r"GNU GENERAL PUBLIC LICENSE\s+Version 3", "GPL-3.0"),
]
SPDX_LIKE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")


def spdx_licence(metadata: dict, bundle: Path) -> str:
    """The bundle's licence as an SPDX id: metadata ``license`` when it is one, else recognised in LICENSE."""
    stated = metadata.get("license")
    if isinstance(stated, str) and SPDX_LIKE.match(stated.strip()):
        return stated.strip()
    for name in ("LICENSE", "docs/LICENSE", "LICENSE.txt"):
        if (bundle / name).is_file():
            text = " ".join((bundle / name).read_text(encoding="utf-8", errors="replace").split())
            for phrase, spdx in LICENCE_PHRASES:
                if re.search(phrase, text, re.IGNORECASE):
                    return spdx
            return "see the bundle's LICENSE"
    return stated.strip() if isinstance(stated, str) and stated.strip() else "not stated"


def load_model_info(source: str) -> dict[str, dict]:
    """``{"<bundle>_v<version>": catalogue item}`` from a model_info.json path or URL."""
    try:
        document = json.loads(read_text(str(source)))
    except json.JSONDecodeError as exc:
        raise DeepMedError(f"{source}: JSON syntax error at line {exc.lineno}: {exc.msg}") from None
    if not looks_like_model_info(document):
        raise DeepMedError(f"{source}: not a MONAI model_info.json ('<bundle>_v<version>': {{checksum, source}})")
    return {f"{item['id']}_v{item['version']}": item for item in read_model_info(document, str(source))}


def _plain_only(value, where: str) -> None:
    """Refuse anything MONAI would evaluate or look up: ``$`` expressions, ``@``/``%`` references."""
    if isinstance(value, str) and value[:1] in ("$", "@", "%"):
        raise DeepMedError(f"{where}: network_def holds {value!r}; random weights are built from plain values only "
                           "(put the real weights in models/model.pt)")
    for item in value.values() if isinstance(value, dict) else value if isinstance(value, list) else []:
        _plain_only(item, where)


def _network_def(bundle: Path) -> dict:
    for name in ("inference.json", "inference.yaml", "inference.yml"):
        path = bundle / "configs" / name
        if path.is_file():
            if path.suffix == ".json":
                config = json.loads(path.read_text(encoding="utf-8"))
            else:
                from deepmed.utils.yaml12 import load_yaml

                config = load_yaml(path.read_text(encoding="utf-8"))
            network = config.get("network_def") if isinstance(config, dict) else None
            if not isinstance(network, dict):
                raise DeepMedError(f"{path}: no network_def")
            return network
    raise DeepMedError(f"{bundle}: no configs/inference.json or .yaml")


def random_weights(bundle: Path, target: Path) -> Path:
    """Random weights of the right shape for a bundle's ``network_def``: the network the importer builds from it
    (the engine's registry, plain arguments only), so that nothing of the bundle is evaluated."""
    import torch

    from deepmed.networks import build_network
    from deepmed.zoo.bundle import NETWORK_NAMES

    network = _network_def(bundle)
    _plain_only(network, str(bundle))
    name = NETWORK_NAMES.get(str(network.get("_target_", "")).rsplit(".", 1)[-1])
    if name is None:
        raise DeepMedError(f"{bundle}: network {network.get('_target_')!r} is not one the engine knows "
                           f"({', '.join(sorted(NETWORK_NAMES))})")
    try:
        module = build_network(name, {k: v for k, v in network.items() if not k.startswith("_")})
    except DeepMedError:
        raise
    except Exception as exc:  # arguments this MONAI's class does not take
        raise DeepMedError(f"{bundle}: network_def cannot be built ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), target)
    return target


def run_check(card: ModelCard, where: str) -> None:
    """One forward pass of the imported network on a patch of zeros: catches what fails only when a model runs
    (a missing optional package such as einops, a patch size the network cannot take)."""
    import torch

    from deepmed.networks import build_network

    network = build_network(card.network.name, card.network.args).eval()
    try:
        with torch.no_grad():
            network(torch.zeros(1, len(card.inputs), *card.patch_size))
    except Exception as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise DeepMedError(f"{where}: imports but does not run ({type(exc).__name__}: {first})") from None


def import_check(bundle: Path, work: Path, run: bool = False) -> dict:
    """Import a bundle into a temporary library (random weights when it has none); the installed card.
    ``run``: also one forward pass (``run_check``)."""
    from deepmed.zoo.package import import_package

    source = bundle
    if not (bundle / "models" / "model.pt").is_file():
        source = work / "bundle" / bundle.name
        shutil.copytree(bundle, source)
    try:
        if source != bundle:
            random_weights(source, source / "models" / "model.pt")
        installed = import_package(source, library=work / "library", model_id=bundle.name)
    except DeepMedError as exc:  # name the bundle given, not the temporary copy
        raise DeepMedError(str(exc).replace(str(source), str(bundle))) from None
    if run:
        run_check(installed.card, str(bundle))
    return {"card": installed.card, "weights_bytes": (installed.path / WEIGHTS).stat().st_size}


def bundle_entry(bundle: Path, model_info: dict[str, dict], card: ModelCard, weights_bytes: int) -> dict:
    """The catalogue entry of an imported bundle: its metadata, the importer's card, model_info's URL and SHA-1."""
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    version = str(metadata.get("version", ""))
    published = model_info.get(f"{bundle.name}_v{version}")
    if published is None:
        known = sorted(k.rsplit("_v", 1)[1] for k in model_info if k.rsplit("_v", 1)[0] == bundle.name)
        raise DeepMedError(f"{bundle}: version {version} is not in model_info.json (it lists "
                           f"{', '.join(known) or 'no version of this bundle'})")
    image = metadata.get("network_data_format", {}).get("inputs", {}).get("image", {})
    modalities = list(dict.fromkeys(str(i.modality) for i in card.inputs if i.modality))
    description = " ".join(part for part in (
        str(metadata.get("description", "")).rstrip(".") + ".",
        f"Task: {metadata['task']}." if metadata.get("task") else "",
        str(metadata.get("intended_use", "")).rstrip(".") + "." if metadata.get("intended_use") else "",
        f"MONAI Model Zoo bundle {bundle.name} {version} by {metadata.get('authors', 'its authors')}, "
        "converted to a deepmed model on download.") if part)
    entry = {"id": bundle.name, "version": version, "format": FORMAT, "title": str(metadata.get("name") or bundle.name),
             "description": description, "task": card.application,
             "modality": ", ".join(modalities) or str(image.get("modality", "")),
             "licence": spdx_licence(metadata, bundle), "urls": published["urls"], "sha1": published["sha1"],
             "weights_mb": round(weights_bytes / 1e6, 1),
             "labels": [str(label.name) for label in card.foreground_labels],
             "inputs": [str(name) for name in card.channel_names]}
    if metadata.get("references"):
        entry["citation"] = "\n".join(str(r) for r in metadata["references"])
    return entry


def entries_from_bundles(bundles: list[Path], model_info_source: str,
                         run: bool = False) -> tuple[list[dict], list[str]]:
    """Catalogue entries for the bundles the importer accepts (and, with ``run``, that run), and one line per bundle
    left out."""
    model_info = load_model_info(model_info_source)
    entries, skipped = [], []
    for bundle in (Path(b) for b in bundles):
        if not (bundle / "configs" / "metadata.json").is_file():
            skipped.append(f"{bundle}: not a MONAI bundle (no configs/metadata.json)")
            continue
        with tempfile.TemporaryDirectory(prefix="deepmed-bundle-catalog-") as work:
            try:
                checked = import_check(bundle, Path(work), run)
                entries.append(bundle_entry(bundle, model_info, checked["card"], checked["weights_bytes"]))
            except DeepMedError as exc:
                skipped.append(str(exc))
            except Exception as exc:  # an importer bug must not stop the other bundles; it is reported
                first = str(exc).splitlines()[0][:160] if str(exc) else ""
                skipped.append(f"{bundle}: the importer failed ({type(exc).__name__}: {first})")
    return entries, skipped


def merge_into(catalogue: dict, entries: list[dict]) -> dict:
    """The catalogue with these entries added, replacing every earlier entry of the same id."""
    ids = {e["id"] for e in entries}
    kept = [m for m in catalogue.get("models", []) if m.get("id") not in ids]
    return {**catalogue, "models": kept + sorted(entries, key=lambda e: e["id"])}
