"""Import a MONAI Model Zoo bundle as a deepmed model that runs the bundle's own pipeline.

The bundle's ``configs/inference.json`` (or ``.yaml``) is read as data (``bundle_config``): the network
from its ``network_def`` (a network the engine's registry knows), and its preprocessing, inferer and
postprocessing kept in the card as MONAI class names with literal arguments, which the ``monai_bundle``
application instantiates at inference. Every transform is either one deepmed runs (``bundle_steps``) or the
bundle is refused naming it. Weights come from the file the bundle's ``CheckpointLoader`` names, read with
``torch.load(weights_only=True)`` (no pickle code runs) and stored as safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

from deepmed.applications.bundle_steps import (
    APPLICATION,
                                               DEVICE_ARGUMENTS,
                                               INFERERS,
                                               MERGE,
                                               POSTPROCESSING,
                                               PREPROCESSING,
                                               SKIPPED,
                                               parse_merge,
)
from deepmed.errors import DeepMedError
from deepmed.model.card import ModelCard
from deepmed.model.directory import CARD, CARD_FORMAT, WEIGHTS, label_colour
from deepmed.zoo.bundle_config import BundleConfig, find_inference_config, read_config_file, transform_list
from deepmed.zoo.checksums import write_sums
from deepmed.zoo.schemas import CARD_SCHEMA, check_document

NETWORK_NAMES = {"UNet": "unet", "BasicUNet": "basic_unet", "BasicUnet": "basic_unet", "SegResNet": "segresnet",
                 "DynUNet": "dynunet", "HighResNet": "highresnet", "SwinUNETR": "swin_unetr", "UNETR": "unetr"}
PRED = "pred"
#: licence texts recognised in a bundle's LICENSE file -> SPDX id
LICENCE_TEXTS = [("Attribution-NonCommercial-ShareAlike 4.0", "CC-BY-NC-SA-4.0"),
                 ("Attribution-NonCommercial 4.0", "CC-BY-NC-4.0"), ("Attribution-ShareAlike 4.0", "CC-BY-SA-4.0"),
                 ("Attribution 4.0 International", "CC-BY-4.0"), ("Apache License", "Apache-2.0"),
                 ("MIT License", "MIT"), ("BSD 3-Clause", "BSD-3-Clause")]
SPDX_NAMES = {"apache 2.0": "Apache-2.0", "apache-2.0": "Apache-2.0", "apache license 2.0": "Apache-2.0",
              "mit": "MIT", "cc-by-4.0": "CC-BY-4.0", "cc-by-nc-4.0": "CC-BY-NC-4.0",
              "cc-by-nc-sa-4.0": "CC-BY-NC-SA-4.0", "cc-by-sa-4.0": "CC-BY-SA-4.0"}


def is_monai_bundle(folder: Path) -> bool:
    return (folder / "configs" / "metadata.json").is_file()


def _short(target) -> str:
    return str(target).rsplit(".", 1)[-1]


def _no_classes(value, where: str, key: str):
    """Arguments must be literal data: a nested ``_target_`` would be an object deepmed would have to build."""
    if isinstance(value, dict):
        if "_target_" in value:
            raise DeepMedError(f"{where}: {key} is a class ({value['_target_']}) where deepmed needs a plain value")
        for k, v in value.items():
            _no_classes(v, where, f"{key}#{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_classes(v, where, f"{key}#{i}")
    return value


def _arguments(config: BundleConfig, raw: dict, key: str, skip=()) -> dict:
    return {k: _no_classes(config.resolve(v, f"{key}#{k}"), config.where, f"{key}#{k}")
            for k, v in raw.items() if not k.startswith("_") and k not in skip}


def _keys(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def pipeline_from_bundle(config: BundleConfig) -> dict:
    """The card's ``task`` section: the bundle's pipeline as MONAI class names and literal arguments."""
    where = config.where
    image_key, loader, pre = None, {}, []
    for path, item in transform_list(config, "preprocessing"):
        name = _short(item["_target_"])
        if name in SKIPPED:
            continue
        if name == "LoadImaged":
            keys = _keys(config.resolve(item.get("keys"), f"{path}#keys"))
            if image_key is not None or len(keys) != 1:
                raise DeepMedError(f"{where}: {path}: deepmed reads one image entry (LoadImaged of one key), "
                                   f"got {keys}")
            image_key = keys[0]
            loader = {"ensure_channel_first": bool(config.resolve(item.get("ensure_channel_first", False),
                                                                  f"{path}#ensure_channel_first"))}
            continue
        if name not in PREPROCESSING:
            raise DeepMedError(f"{where}: preprocessing transform {name} ({path}) is not one deepmed runs; "
                               f"supported: LoadImaged, {', '.join(sorted(PREPROCESSING))}")
        pre.append({"name": name, "args": _arguments(config, item, path)})
    if image_key is None:
        raise DeepMedError(f"{where}: the preprocessing has no LoadImaged: deepmed does not know the image entry")
    inferer_raw = config.raw("inferer") if config.has("inferer") else None
    if not isinstance(inferer_raw, dict) or _short(inferer_raw.get("_target_")) not in INFERERS:
        found = _short(inferer_raw.get("_target_")) if isinstance(inferer_raw, dict) else inferer_raw
        raise DeepMedError(f"{where}: inferer {found!r} is not one deepmed runs ({', '.join(sorted(INFERERS))})")
    inferer = {"name": _short(inferer_raw["_target_"]),
               "args": _arguments(config, inferer_raw, "inferer", skip=DEVICE_ARGUMENTS)}
    post = []
    for path, item in transform_list(config, "postprocessing"):
        name = _short(item["_target_"])
        if name in SKIPPED:
            continue
        if name == "Lambdad":
            func = item.get("func")
            if not isinstance(func, str):
                raise DeepMedError(f"{where}: {path}: Lambdad without a func deepmed can read")
            merge = parse_merge(func, f"{where}: {path}")
            post.append({"name": MERGE, "args": {"keys": config.resolve(item.get("keys"), f"{path}#keys"), **merge}})
            continue
        if name not in POSTPROCESSING:
            raise DeepMedError(f"{where}: postprocessing transform {name} ({path}) is not one deepmed runs; "
                               f"supported: Lambdad label merges, {', '.join(sorted(POSTPROCESSING))}")
        skip = ()
        if name == "Invertd":
            if item.get("transform") not in ("@preprocessing", "%#preprocessing", "$@preprocessing",
                                             "$copy.deepcopy(@preprocessing)"):
                raise DeepMedError(f"{where}: {path}: Invertd of {item.get('transform')!r}; deepmed inverts the "
                                   "bundle's @preprocessing only")
            skip = ("transform",)
        if name == "Activationsd" and item.get("other") is not None:
            raise DeepMedError(f"{where}: {path}: Activationsd with a custom function ('other') is not run")
        post.append({"name": name, "args": _arguments(config, item, path, skip=skip)})
    for step in pre + post:
        extra = set(_keys(step["args"].get("keys"))) - {image_key, PRED}
        if extra and not step["args"].get("allow_missing_keys"):
            raise DeepMedError(f"{where}: {step['name']} works on {sorted(extra)}; deepmed's pipeline holds only "
                               f"{image_key!r} and {PRED!r}")
    return {"image_key": image_key, "loader": loader, "preprocessing": pre, "inferer": inferer,
            "postprocessing": post}


def output_of(pipeline: dict, out_channels: int, channel_def: dict, where: str) -> tuple[str, list[dict]]:
    """The output kind and labels the postprocessing produces from ``out_channels`` network channels."""
    names = {int(k): str(v) for k, v in (channel_def or {}).items() if str(k).isdigit()}
    channels, values, discrete = out_channels, None, False
    for step in pipeline["postprocessing"]:
        args = step["args"]
        if step["name"] == "AsDiscreted":
            if args.get("argmax"):
                if args.get("keepdim") is False:
                    raise DeepMedError(f"{where}: AsDiscreted(argmax, keepdim=false) drops the channel axis")
                channels, discrete = 1, True
                values = {v: names.get(v, "background" if v == 0 else f"label_{v}") for v in range(out_channels)}
            if args.get("to_onehot"):
                channels, discrete = int(args["to_onehot"]), True
            if args.get("threshold") is not None:
                discrete = True
                if channels == 1:
                    values = {0: "background", 1: names.get(1, names.get(0, "foreground"))}
        elif step["name"] == MERGE:
            channels, discrete = 1, True
            values = {args["otherwise"]: "background"} if args["otherwise"] == 0 else {}
            for channel, _, _, value in args["rules"]:
                values.setdefault(value, names.get(channel, f"channel_{channel}"))
        elif step["name"] == "MapLabelValued" and values is not None:
            mapping = dict(zip(args.get("orig_labels", []), args.get("target_labels", [])))
            values = {mapping.get(v, v): n for v, n in values.items()}
        elif step["name"] == "LabelFilterd" and values is not None:
            kept = set(_keys(args.get("applied_labels")) if not isinstance(args.get("applied_labels"), int)
                       else [args["applied_labels"]])
            values = {v: n for v, n in values.items() if v in kept or v == 0}
    if not discrete:
        raise DeepMedError(f"{where}: the postprocessing ends in probabilities, not labels (no AsDiscreted "
                           "argmax/threshold); deepmed imports segmentation bundles")
    if any(not float(v).is_integer() or not 0 <= v <= 65535 for v in values or {}):
        raise DeepMedError(f"{where}: label values {sorted(values)} are not integers in 0..65535")
    if channels == 1:
        labels = [{"value": int(v), "name": n, "color": label_colour(int(v))}
                  for v, n in sorted((values or {}).items())]
        return "label_map", labels
    labels = [{"value": c + 1, "name": names.get(c, f"channel_{c}"), "color": label_colour(c + 1)}
              for c in range(channels)]
    return "overlapping_masks", labels


def _licence(metadata: dict, bundle: Path) -> str:
    stated = str(metadata.get("license") or metadata.get("licence") or "").strip()
    if stated:
        return SPDX_NAMES.get(stated.lower(), stated)[:200]
    for name in ("LICENSE", "LICENSE.txt", "docs/LICENSE", "license.txt"):
        if (bundle / name).is_file():
            text = (bundle / name).read_text(encoding="utf-8", errors="replace")[:4000]
            for marker, spdx in LICENCE_TEXTS:
                if marker.lower() in text.lower():
                    return spdx
            return f"see LICENSE ({name})"
    return "unknown: the bundle states none"


def _inputs(metadata: dict, image_key: str, in_channels: int) -> list[dict]:
    formats = metadata.get("network_data_format", {}).get("inputs", {})
    image = formats.get(image_key) or (next(iter(formats.values())) if formats else {})
    modality = str(image.get("modality", ""))
    channel_def = image.get("channel_def") or {}
    names = [str(channel_def.get(str(i), "")) for i in range(in_channels)]
    if not all(names):
        names = [modality or "image"] if in_channels == 1 else \
            [f"{modality or 'channel'}_{i}" for i in range(in_channels)]
    return [{"name": name, "modality": modality, "normalization": "none",
             "assumptions": f"MONAI bundle preprocessing; {image.get('format', '')}".strip("; ")} for name in names]


def card_from_bundle(metadata: dict, config: BundleConfig, bundle: Path) -> dict:
    where = config.where
    network = config.get("network_def") if config.has("network_def") else None
    if not isinstance(network, dict) or "_target_" not in network:
        raise DeepMedError(f"{where}: the inference config has no network_def with a _target_")
    name = NETWORK_NAMES.get(_short(network["_target_"]))
    if name is None:
        raise DeepMedError(f"{where}: network {network['_target_']!r} is not one the engine knows "
                           f"({', '.join(sorted(NETWORK_NAMES))})")
    args = {k: _no_classes(v, where, f"network_def#{k}") for k, v in network.items() if not k.startswith("_")}
    pipeline = pipeline_from_bundle(config)
    formats = metadata.get("network_data_format", {})
    outputs = formats.get("outputs", {})
    output_format = outputs.get(PRED) or (next(iter(outputs.values())) if outputs else {})
    out_channels = int(args.get("out_channels", output_format.get("num_channels", 1)))
    kind, labels = output_of(pipeline, out_channels, output_format.get("channel_def"), where)
    spacing = next((s["args"].get("pixdim") for s in pipeline["preprocessing"] if s["name"] == "Spacingd"), None)
    orientation = next((s["args"].get("axcodes") for s in pipeline["preprocessing"] if s["name"] == "Orientationd"),
                       "RAS")
    roi = pipeline["inferer"]["args"].get("roi_size")
    shape = formats.get("inputs", {}).get(pipeline["image_key"], {}).get("spatial_shape")
    patch = next((p for p in (roi, shape)
                  if isinstance(p, list) and len(p) == 3 and all(isinstance(v, int) for v in p)), [96, 96, 96])
    bundle_name = str(metadata.get("name") or bundle.name)
    version = str(metadata.get("version", "0.0.0"))
    card = {
        "format": CARD_FORMAT, "application": APPLICATION, "output_kind": kind,
        "id": "".join(c if c.isalnum() or c in "._-" else "-" for c in Path(where).stem).strip("-._")[:100] or "bundle",
        "version": version, "title": bundle_name, "description": str(metadata.get("description", ""))[:5000],
        "authors": [metadata["authors"]] if isinstance(metadata.get("authors"), str) else
        [str(a) for a in metadata.get("authors", [])],
        "licence": _licence(metadata, bundle),
        "inputs": _inputs(metadata, pipeline["image_key"], int(args.get("in_channels", 1))),
        "labels": labels, "target": {},
        "spacing": [float(v) for v in spacing] if isinstance(spacing, list) and len(spacing) == 3 else [1.0, 1.0, 1.0],
        "orientation": orientation if orientation in ("RAS", "LPS") else "RAS",
        "array_axes": "xyz", "patch_size": [int(v) for v in patch],
        "network": {"name": name, "args": args},
        "task": pipeline,
        "source": {"format": "monai-bundle", "name": bundle_name, "version": version,
                   "config": f"configs/{config.path_name}", "copyright": str(metadata.get("copyright", "")),
                   "data_license": str(metadata.get("data_license", ""))[:500]},
    }
    if metadata.get("references"):
        card["citation"] = "\n".join(str(r) for r in metadata["references"])[:5000]
    return card


# ---- weights -------------------------------------------------------------------------------------------
def checkpoint_of(config: BundleConfig, bundle: Path) -> tuple[Path, str | None]:
    """The weights file the bundle's CheckpointLoader names (relative to the bundle) and its load_dict key."""
    loaders = []

    def walk(node, key):
        if isinstance(node, dict):
            if _short(node.get("_target_", "")) == "CheckpointLoader":
                loaders.append((node, key))
            for k, v in node.items():
                walk(v, f"{key}#{k}" if key else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{key}#{i}")

    walk(config.config, "")
    if not loaders:
        return bundle / "models" / "model.pt", None
    node, key = loaders[0]
    located = BundleConfig(config.config, config.where, bundle, {"bundle_root": ".", **config.values}, config.used)
    path = located.resolve(node.get("load_path"), f"{key}#load_path")
    if not isinstance(path, str) or Path(path).is_absolute() or ".." in Path(path).parts:
        raise DeepMedError(f"{config.where}: {key}#load_path = {path!r} is not a file inside the bundle")
    load_dict = node.get("load_dict") if isinstance(node.get("load_dict"), dict) else {}
    model_key = next((k for k, v in load_dict.items() if v in ("@network", "@network_def")), None)
    return bundle / path, model_key


def read_state_dict(path: Path, model_key: str | None, where: str) -> dict:
    import torch

    name = path.name
    if not path.is_file():
        raise DeepMedError(f"{where}: weights file {name} (named by the bundle's CheckpointLoader) not found")
    if path.suffix == ".ts":
        raise DeepMedError(f"{where}: {name} is a TorchScript model (code); deepmed accepts state dicts only")
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything but tensors: nothing was executed
        raise DeepMedError(f"{where}: {name} refused by the safe loader (weights_only=True): "
                           f"{str(exc).splitlines()[0][:160]}") from None
    for key in (model_key, "state_dict", "model", "network"):
        if key and isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise DeepMedError(f"{where}: {name} holds no plain state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in loaded.items()}


def fit_weights(network, weights: dict, name: str, where: str) -> None:
    """Load ``weights`` strictly; a mismatch says briefly which keys are missing, unexpected or mis-shaped."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
              if k in weights and tuple(weights[k].shape) != tuple(v.shape)]

    def few(items):
        return ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")

    problems = [f"{len(missing)} missing: {few(missing)}" if missing else "",
                f"{len(unexpected)} unexpected: {few(unexpected)}" if unexpected else "",
                f"{len(shapes)} of another shape: {few(shapes)}" if shapes else ""]
    if any(problems):
        raise DeepMedError(f"{where}: {name} does not fit network_def: " + "; ".join(p for p in problems if p))
    network.load_state_dict(weights, strict=True)


def convert_bundle(bundle: Path, target: Path, where: str, values: dict | None = None) -> dict:
    """Write ``target`` as a deepmed package made from the bundle; returns its card. ``values``: the user's
    values for config keys holding ``$`` expressions (``--set key=value``)."""
    from deepmed.applications import trainable_as
    from deepmed.model.weights import save_weights
    from deepmed.networks import build_network

    metadata = read_config_file(bundle / "configs" / "metadata.json", where)
    if not isinstance(metadata, dict):
        raise DeepMedError(f"{where}: configs/metadata.json is not a JSON object")
    config_path = find_inference_config(bundle, where)
    config = BundleConfig(read_config_file(config_path, where), where, bundle, values)
    config.path_name = config_path.name
    card = card_from_bundle(metadata, config, bundle)
    card["trainable_as"] = trainable_as(ModelCard.from_dict(card, f"{where}: converted card"))
    weights_path, model_key = checkpoint_of(config, bundle)
    unused = sorted(set(config.values) - config.used - {"bundle_root"})
    if unused:
        raise DeepMedError(f"{where}: --set {unused[0]}: no entry the import reads has this key")
    check_document(card, CARD_SCHEMA, f"{where}: converted card")
    weights = read_state_dict(weights_path, model_key, where)
    network = build_network(card["network"]["name"], card["network"]["args"])
    fit_weights(network, weights, weights_path.relative_to(bundle).as_posix(), where)
    target.mkdir(parents=True)
    save_weights(network.state_dict(), target / WEIGHTS)
    (target / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    for name in ("LICENSE", "docs/LICENSE", "license.txt"):
        if (bundle / name).is_file():
            (target / "LICENSE").write_bytes((bundle / name).read_bytes())
            break
    else:
        (target / "LICENSE").write_text(f"Licence stated by the bundle: {card['licence']}\n", encoding="utf-8")
    for name in ("docs/README.md", "README.md"):
        if (bundle / name).is_file():
            (target / "README.md").write_bytes((bundle / name).read_bytes())
            break
    write_sums(target)
    return card
