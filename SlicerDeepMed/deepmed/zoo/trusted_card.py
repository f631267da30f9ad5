"""The trusted import of a MONAI bundle (``deepmed zoo import BUNDLE --trust-code``): model directory and card.

The bundle's pipeline is built once by MONAI's ``ConfigParser`` (this runs the bundle's code, which the user
opted into) to check that it builds, to learn the entries its ``LoadImaged`` reads and to fit the weights.
The weights are read with ``torch.load(weights_only=True)`` and stored as safetensors; the card records
``trust_code: true`` and what runs (``trusted_bundle.code_to_run``), and its description says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from deepmed.applications.bundle_clicks import BundleClicks, find_bundle_clicks
from deepmed.applications.trusted_bundle import (
    APPLICATION,
    BUNDLE_FOLDER,
    built,
    bundle_code,
    input_keys,
    trusted_parser,
)
from deepmed.errors import DeepMedError
from deepmed.model.directory import CARD, CARD_FORMAT, WEIGHTS, label_colour
from deepmed.zoo.bundle_config import find_inference_config, read_config_file
from deepmed.zoo.bundle_config import lookup as _lookup
from deepmed.zoo.checksums import write_sums
from deepmed.zoo.schemas import CARD_SCHEMA, check_document
from deepmed.zoo.trusted_bundle import CodeToRun, code_to_run, copy_bundle_code

IMAGE_KEY, PRED_KEY = "image", "pred"  # the entries MONAI's SupervisedEvaluator feeds and fills


def _checkpoint_loader(config) -> tuple[str | None, dict]:
    """The config key of the bundle's CheckpointLoader and its raw entry (None when it has none)."""
    found: list[tuple[str, dict]] = []

    def walk(node, key):
        if isinstance(node, dict):
            if str(node.get("_target_", "")).rsplit(".", 1)[-1] == "CheckpointLoader":
                found.append((key, node))
            items = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            return
        for name, value in items:
            walk(value, f"{key}#{name}" if key else str(name))

    walk(config, "")
    return found[0] if found else (None, {})


def _weights_file(parser, config, bundle: Path, bundle_dir: Path, where: str) -> tuple[Path, str | None]:
    key, loader = _checkpoint_loader(config)
    if key is None:
        return bundle / "models" / "model.pt", None
    path = Path(str(built(parser, f"{key}#load_path", where)))
    try:
        relative = path.resolve().relative_to(bundle_dir.resolve()) if path.is_absolute() else path
    except ValueError:
        raise DeepMedError(f"{where}: {key}#load_path = {str(path)!r} is not a file inside the bundle") from None
    if ".." in relative.parts:
        raise DeepMedError(f"{where}: {key}#load_path = {str(path)!r} is not a file inside the bundle")
    load_dict = loader.get("load_dict") if isinstance(loader.get("load_dict"), dict) else {}
    model_key = next((k for k, v in load_dict.items() if v in ("@network", "@network_def")), None)
    return bundle / relative, model_key


def _output_kind(config, metadata: dict) -> str:
    """``overlapping_masks`` when the postprocessing thresholds channels and nothing of the bundle's own code
    follows; a label map otherwise (an argmax, or a bundle transform merging channels into labels)."""
    steps = _lookup(config, "postprocessing#transforms") or _lookup(config, "postprocessing") or []
    kind, discrete = "label_map", False
    for step in steps if isinstance(steps, list) else []:
        target = str(step.get("_target_", "")) if isinstance(step, dict) else ""
        name = target.rsplit(".", 1)[-1]
        if name == "AsDiscreted":
            discrete = True
            kind = "label_map" if step.get("argmax") is True else \
                "overlapping_masks" if step.get("threshold") is not None or step.get("to_onehot") else kind
        elif "." in target and not target.startswith(("monai.", "torch.")):
            discrete, kind = True, "label_map"
    output = next(iter(metadata.get("network_data_format", {}).get("outputs", {}).values()), {})
    if not discrete and not str(output.get("format", "")).lower().startswith("segment"):
        raise DeepMedError("the bundle's postprocessing gives no labels (no AsDiscreted, no transform of its own) "
                           "and its metadata does not call the output a segmentation; deepmed imports "
                           "segmentation bundles")
    return kind


def _inputs(metadata: dict, keys: list[str], in_channels) -> list[dict]:
    from deepmed.zoo.bundle import _inputs as bundle_inputs

    if len(keys) == 1:
        return bundle_inputs(metadata, keys[0], in_channels if isinstance(in_channels, int) else 1)
    formats = metadata.get("network_data_format", {}).get("inputs", {})
    modality = str(next(iter(formats.values()), {}).get("modality", ""))
    return [{"name": key, "modality": modality, "normalization": "none",
             "assumptions": f"the bundle's entry {key!r}, read by its own LoadImaged"} for key in keys]


def _literal(value, length: int = 3):
    if isinstance(value, list) and len(value) == length and all(isinstance(v, (int, float)) for v in value):
        return value
    return None


#: The modes of a bundle that takes clicks (as an interactive model's): refine with clicks, or without them.
CLICK_MODES = [
    {"name": "refine", "output_kind": "label_map", "inputs": "clicks",
     "description": "segment with positive/negative clicks (the bundle's own guidance)"},
    {"name": "predict", "output_kind": "label_map", "inputs": "images",
     "description": "every label automatically (no clicks)"}]


def trusted_card(metadata: dict, config: dict, bundle: Path, where: str, keys: list[str], values: dict,
                 prompt: BundleClicks | None = None) -> dict:
    """The card of a trusted bundle; ``prompt``: its click settings when its preprocessing takes clicks (its
    labels are then the bundle's ``label_names``, the keys its clicks go under)."""
    from deepmed.zoo.bundle import _licence

    code = code_to_run(config, bundle)
    kind = _output_kind(config, metadata)
    outputs = metadata.get("network_data_format", {}).get("outputs", {})
    output = outputs.get(PRED_KEY) or next(iter(outputs.values()), {})
    names = {int(k): str(v) for k, v in (output.get("channel_def") or {}).items() if str(k).isdigit()}
    channels = _lookup(config, "network_def#out_channels")
    channels = channels if isinstance(channels, int) else int(output.get("num_channels", max(names, default=1) + 1))
    if kind == "label_map":
        labels = [{"value": c, "name": names.get(c, "background" if c == 0 else f"label_{c}"),
                   "color": label_colour(c)} for c in range(channels)]
    else:
        labels = [{"value": c + 1, "name": names.get(c, f"channel_{c}"), "color": label_colour(c + 1)}
                  for c in range(channels)]
    prompt = prompt if kind == "label_map" else None
    if prompt is not None:
        labels = [{"value": v, "name": n, "color": label_colour(v)}
                  for n, v in sorted(prompt.labels.items(), key=lambda item: item[1])]
    name, version = str(metadata.get("name") or bundle.name), str(metadata.get("version", "0.0.0"))
    steps = _lookup(config, "preprocessing#transforms") or []
    spacing = next((_literal(s.get("pixdim")) for s in steps if isinstance(s, dict)
                    and str(s.get("_target_", "")).endswith("Spacingd")), None)
    card = {
        "format": CARD_FORMAT, "application": APPLICATION, "output_kind": kind,
        "id": "".join(c if c.isalnum() or c in "._-" else "-" for c in Path(where).stem).strip("-._")[:100] or "bundle",
        "version": version, "title": name,
        "description": (f"Trusted MONAI bundle: runs the bundle's own code through MONAI ({code.summary()}).\n\n"
                        + str(metadata.get("description", "")))[:5000],
        "licence": _licence(metadata, bundle), "inputs": _inputs(metadata, keys, _lookup(config, "network_def#in_"
                                                                                         "channels")),
        "labels": labels, "orientation": "RAS", "array_axes": "xyz",
        "trust_code": True, "trusted_code": code.as_dict(),
        "task": {"config": f"{BUNDLE_FOLDER}/configs/{find_inference_config(bundle, where).name}",
                 "input_keys": keys, "image_key": IMAGE_KEY, "pred_key": PRED_KEY, "values": values,
                 "amp": _lookup(config, "evaluator#amp") is True},
        "source": {"format": "monai-bundle", "name": name, "version": version, "trusted": True,
                   "copyright": str(metadata.get("copyright", "")),
                   "data_license": str(metadata.get("data_license", ""))[:500]},
    }
    if prompt is not None:
        card["modes"] = CLICK_MODES
        card["task"]["clicks"] = prompt.to_dict()
    if spacing:
        card["spacing"] = [float(v) for v in spacing]
    roi = _literal(_lookup(config, "inferer#roi_size"))
    if roi and all(isinstance(v, int) and v > 0 for v in roi):
        card["patch_size"] = roi
    if metadata.get("references"):
        card["citation"] = "\n".join(str(r) for r in metadata["references"])[:5000]
    return card


def convert_trusted_bundle(bundle: Path, target: Path, where: str, values: dict) -> dict:
    """Write ``target`` as a trusted model made from the bundle (its code runs here, once, to check it)."""
    import torch

    from deepmed.model.weights import save_weights
    from deepmed.zoo.bundle import fit_weights, read_state_dict

    metadata = read_config_file(bundle / "configs" / "metadata.json", where)
    if not isinstance(metadata, dict):
        raise DeepMedError(f"{where}: configs/metadata.json is not a JSON object")
    config = read_config_file(find_inference_config(bundle, where), where)
    for key in values:
        if _lookup(config, key) is None:
            raise DeepMedError(f"{where}: --set {key}: the bundle's inference config has no such entry")
    target.mkdir(parents=True)
    copy_bundle_code(bundle, target)
    bundle_dir = target / BUNDLE_FOLDER
    with bundle_code(bundle_dir):
        config_file = bundle_dir / "configs" / find_inference_config(bundle, where).name
        parser = trusted_parser(bundle_dir, config_file, values, torch.device("cpu"))
        network = built(parser, "network_def", where)
        if not isinstance(network, torch.nn.Module):
            raise DeepMedError(f"{where}: network_def builds a {type(network).__name__}, not a torch network")
        preprocessing = built(parser, "preprocessing", where)
        for key in ("inferer", "postprocessing"):
            built(parser, key, where)
        weights_path, model_key = _weights_file(parser, config, bundle, bundle_dir, where)
    keys = input_keys(preprocessing)
    if not keys:
        raise DeepMedError(f"{where}: the preprocessing has no LoadImaged of an image entry: deepmed does not know "
                           "which files to give it")
    card = trusted_card(metadata, config, bundle, where, keys, values, find_bundle_clicks(preprocessing))
    check_document(card, CARD_SCHEMA, f"{where}: converted card")
    fit_weights(network, read_state_dict(weights_path, model_key, where),
                weights_path.relative_to(bundle).as_posix(), where)
    save_weights(network.state_dict(), target / WEIGHTS)  # cloned tensors: shared ones (DynUNet) save too
    (target / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    licence = bundle / "LICENSE"
    if licence.is_file():
        (target / "LICENSE").write_bytes(licence.read_bytes())
    else:
        (target / "LICENSE").write_text(f"Licence stated by the bundle: {card['licence']}\n", encoding="utf-8")
    write_sums(target)
    return card


# ---- import --------------------------------------------------------------------------------------------
def convert_with_trust(bundle: Path, target: Path, where: str, values: dict | None, trust_code: bool,
                       as_data) -> dict:
    """``as_data(bundle, target, where, values)`` (the import that runs no code); when it refuses a bundle
    that needs code, the trusted import with ``trust_code``, else the refusal saying that ``--trust-code``
    exists and what it would run."""
    try:
        return as_data(bundle, target, where, values)
    except DeepMedError as refusal:
        try:
            config = read_config_file(find_inference_config(bundle, where), where)
        except DeepMedError:
            raise refusal from None
        code = code_to_run(config, bundle) if isinstance(config, dict) else CodeToRun()
        if not code.needed:
            raise
        if not trust_code:
            raise DeepMedError(f"{refusal}. The bundle's pipeline needs its own code ({code.summary()}); to run "
                               "it through MONAI, import with --trust-code (see: deepmed zoo inspect BUNDLE --json)"
                               ) from None
    if target.exists():
        shutil.rmtree(target)
    return convert_trusted_bundle(bundle, target, where, dict(values or {}))
