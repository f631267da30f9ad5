"""Import a MONAI Model Zoo bundle (``configs/metadata.json``, ``configs/inference.json``,
``models/model.pt``) whose network the engine knows, as a deepmed model package.

The bundle's configs are read as data, never evaluated: the network comes from its ``_target_`` name
mapped onto the engine's registry with plain arguments (expressions such as ``$...`` or ``@...`` are
refused), the preprocessing from the known MONAI transforms (orientation, spacing, intensity range), and
the weights are loaded with ``torch.load(weights_only=True)`` (no pickle code runs) and stored as safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.model.directory import CARD, CARD_FORMAT, WEIGHTS, label_colour
from deepmed.zoo.checksums import write_sums
from deepmed.zoo.schemas import CARD_SCHEMA, check_document

NETWORK_NAMES = {"UNet": "unet", "BasicUNet": "basic_unet", "SegResNet": "segresnet", "DynUNet": "dynunet",
                 "HighResNet": "highresnet", "SwinUNETR": "swin_unetr", "UNETR": "unetr"}
NORMALIZE_FOREGROUND = "zscore_foreground"


def is_monai_bundle(folder: Path) -> bool:
    return (folder / "configs" / "metadata.json").is_file()


def _load_json(path: Path, where: str) -> dict:
    if not path.is_file():
        raise DeepMedError(f"{where}: MONAI bundle without {path.relative_to(path.parents[1])}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DeepMedError(f"{where}: {path.name}: JSON syntax error at line {exc.lineno}: {exc.msg}") from None


def _plain(value, where: str, key: str):
    """Reject MONAI config expressions/references: only plain data maps onto the engine."""
    if isinstance(value, str) and value[:1] in ("$", "@", "%"):
        raise DeepMedError(f"{where}: {key} = {value!r} is a MONAI config expression; only plain values can be "
                           "imported safely")
    if isinstance(value, dict):
        return {k: _plain(v, where, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, where, key) for v in value]
    return value


def _transforms(config: dict) -> list[dict]:
    pre = config.get("preprocessing", {})
    items = pre.get("transforms", []) if isinstance(pre, dict) else pre
    return [t for t in items if isinstance(t, dict)]


def _short(target: str) -> str:
    return str(target).rsplit(".", 1)[-1]


def card_from_bundle(metadata: dict, inference: dict, where: str) -> dict:
    network = inference.get("network_def")
    if not isinstance(network, dict) or "_target_" not in network:
        raise DeepMedError(f"{where}: inference.json has no network_def with a _target_")
    name = NETWORK_NAMES.get(_short(network["_target_"]))
    if name is None:
        raise DeepMedError(f"{where}: network {network['_target_']!r} is not one the engine knows "
                           f"({', '.join(sorted(NETWORK_NAMES))})")
    args = {k: _plain(v, where, f"network_def.{k}") for k, v in network.items() if not k.startswith("_")}
    spacing, orientation, normalization, statistics = None, "RAS", "none", None
    for transform in _transforms(inference):
        kind = _short(transform.get("_target_", ""))
        if kind == "Spacingd":
            spacing = _plain(transform.get("pixdim"), where, "Spacingd.pixdim")
        elif kind == "Orientationd":
            orientation = _plain(transform.get("axcodes", "RAS"), where, "Orientationd.axcodes")
        elif kind == "ScaleIntensityRanged":
            normalization = "scale_range"
            statistics = {k: _plain(transform[k], where, f"ScaleIntensityRanged.{k}")
                          for k in ("a_min", "a_max", "b_min", "b_max") if k in transform}
            statistics["clip"] = bool(transform.get("clip", False))
        elif kind == "NormalizeIntensityd":
            normalization = NORMALIZE_FOREGROUND if transform.get("nonzero") else "zscore"
    if orientation not in ("RAS", "LPS"):
        raise DeepMedError(f"{where}: orientation {orientation!r} not supported (RAS or LPS)")
    formats = metadata.get("network_data_format", {})
    image_format = formats.get("inputs", {}).get("image", {})
    output_format = formats.get("outputs", {}).get("pred", {})
    inferer = inference.get("inferer", {})
    roi = _plain(inferer.get("roi_size") or image_format.get("spatial_shape"), where, "inferer.roi_size")
    if spacing is None:
        raise DeepMedError(f"{where}: no Spacingd in the preprocessing: the model's voxel spacing is unknown")
    if not roi or len(roi) != 3 or not all(isinstance(v, int) for v in roi):
        raise DeepMedError(f"{where}: no usable sliding-window roi_size (got {roi!r})")
    channel_def = output_format.get("channel_def") or {str(i): f"label_{i}" for i in range(args.get("out_channels", 2))}
    labels = [{"value": int(value), "name": str(label), "color": label_colour(int(value))}
              for value, label in sorted(channel_def.items(), key=lambda item: int(item[0]))]
    bundle_name = metadata.get("name") or Path(where).stem
    card = {
        "format": CARD_FORMAT, "application": "segmentation",
        "id": "".join(c if c.isalnum() or c in "._-" else "-" for c in bundle_name).strip("-._")[:100] or "bundle",
        "version": str(metadata.get("version", "0.0.0")), "title": bundle_name,
        "description": metadata.get("description", "")[:5000],
        "authors": [metadata["authors"]] if isinstance(metadata.get("authors"), str) else metadata.get("authors", []),
        "licence": metadata.get("license") or metadata.get("copyright") or "see LICENSE",
        "inputs": [{"name": image_format.get("modality", "image"), "modality": image_format.get("modality", ""),
                    "normalization": normalization, "statistics": statistics,
                    "assumptions": image_format.get("format", "")}
                   for _ in range(int(image_format.get("num_channels", args.get("in_channels", 1))))],
        "labels": labels, "target": {}, "spacing": [float(v) for v in spacing], "orientation": orientation,
        "array_axes": "xyz", "patch_size": [int(v) for v in roi],
        "network": {"name": name, "args": args},
        "inference": {"overlap": float(inferer.get("overlap", 0.25)),
                      "sw_batch_size": int(inferer.get("sw_batch_size", 1)),
                      "blend_mode": str(inferer.get("mode", "constant")), "tta_flips": False, "keep_largest": False,
                      "precision": "float32"},
        "source": {"format": "monai-bundle", "name": bundle_name, "version": str(metadata.get("version", ""))},
    }
    if metadata.get("references"):
        card["citation"] = "\n".join(str(r) for r in metadata["references"])[:5000]
    return card


def _state_dict(path: Path, where: str) -> dict:
    import torch

    if not path.is_file():
        raise DeepMedError(f"{where}: MONAI bundle without models/model.pt (TorchScript .ts models are not "
                           "accepted: they are code)")
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything but tensors: nothing was executed
        raise DeepMedError(f"{where}: models/model.pt refused by the safe loader (weights_only=True): "
                           f"{str(exc).splitlines()[0][:160]}") from None
    for key in ("state_dict", "model", "network"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise DeepMedError(f"{where}: models/model.pt holds no plain state dict of tensors")
    return loaded


def convert_bundle(bundle: Path, target: Path, where: str) -> dict:
    """Write ``target`` as a deepmed package made from the bundle; returns its card."""
    from safetensors.torch import save_file

    from deepmed.networks import build_network

    metadata = _load_json(bundle / "configs" / "metadata.json", where)
    inference = _load_json(bundle / "configs" / "inference.json", where)
    card = card_from_bundle(metadata, inference, where)
    check_document(card, CARD_SCHEMA, f"{where}: converted card")
    weights = _state_dict(bundle / "models" / "model.pt", where)
    network = build_network(card["network"]["name"], card["network"]["args"])
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise DeepMedError(f"{where}: models/model.pt does not fit the network in inference.json "
                           f"({str(exc).splitlines()[0][:160]})") from None
    target.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(target / WEIGHTS))
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
