"""Every MONAI Model Zoo bundle through deepmed's importer, compared with MONAI's own pipeline; writes the table.

Usage (reads a local checkout of github.com/Project-MONAI/model-zoo; downloads nothing):

    python Testing/tools/survey_monai_zoo.py MODEL_ZOO_CHECKOUT [--out docs/monai_bundles.md] [--only NAME ...]

Per bundle (``models/<name>``): deepmed reads the inference config (no weights needed to decide). A bundle it
refuses gets a reason class: needs bundle code (``scripts/`` or an expression outside the pure subset: what
``--trust-code`` runs), 2D, prompts (interactive), detection, generation, classification, registration,
landmarks, or another importer refusal. A bundle it accepts gets random weights of the right shape (MONAI builds
``network_def``), is imported and run with ``deepmed infer`` on a small synthetic scan at the bundle's spacing,
and its own pipeline is run by MONAI's ConfigParser on the same file (as ``test_monai_bundle_fidelity``): the
share of identical voxels is reported. Sliding windows above 64 voxels are cut to 64^3 on both sides (CPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from deepmed.errors import DeepMedError
from deepmed.zoo.bundle import card_from_bundle, checkpoint_of
from deepmed.zoo.bundle_config import BundleConfig, BundleNeedsCode, find_inference_config, read_config_file

SIZE = (48, 40, 32)
CLASSES = [  # (reason class, a pattern of the bundle's name and metadata task that marks it)
    ("prompts (interactive)", r"deepedit|nuclick|vista3d|interactive|annotation"),
    ("generation", r"generat|synthesis|diffusion|\bgan\b"),
    ("detection", r"detection"),
    ("registration", r"registration|\breg\b"),
    ("landmarks", r"landmark"),
    ("classification", r"classification"),
]


@dataclass
class Row:
    name: str
    dims: str
    task: str
    status: str  # identical | trusted | refused | differs
    detail: str


def metadata_class(name: str, metadata: dict) -> str | None:
    text = f"{name} {metadata.get('task', '')}".lower().replace("_", " ")
    return next((reason for reason, pattern in CLASSES if re.search(pattern, text)), None)


def spatial_dims(metadata: dict) -> int:
    inputs = metadata.get("network_data_format", {}).get("inputs", {})
    shape = next(iter(inputs.values()), {}).get("spatial_shape", [])
    return len(shape) if isinstance(shape, list) else 0


def needs_code(config: dict) -> str | None:
    """What of the bundle's own code the config uses (``scripts`` imports or targets), if any."""
    text = json.dumps(config)
    if "scripts." in text or "import scripts" in text:
        return "its scripts/ package"
    if "torch.load" in text and "arch_ckpt" in text:
        return "an architecture file read with $torch.load"
    return None


def classify(bundle: Path) -> tuple[Row, dict | None, BundleConfig | None]:
    metadata = read_config_file(bundle / "configs" / "metadata.json", bundle.name)
    dims = spatial_dims(metadata)
    task = str(metadata.get("task", ""))[:60]
    row = Row(bundle.name, f"{dims}D" if dims else "-", task, "refused", "")
    try:
        path = find_inference_config(bundle, bundle.name)
    except DeepMedError:
        row.detail = "no inference config"
        return row, None, None
    raw = read_config_file(path, bundle.name)
    config = BundleConfig(raw, bundle.name, bundle, _cpu_values(raw))
    config.path_name = path.name
    reason = metadata_class(bundle.name, metadata)
    code = needs_code(raw)
    try:
        card = card_from_bundle(metadata, config, bundle)
        checkpoint_of(config, bundle)
    except BundleNeedsCode as exc:
        row.status = "trusted" if (code or dims == 3) and reason is None else "refused"
        kind = ", ".join(k for k in ("2D" if dims == 2 else "", reason or "") if k) or f"{dims}D segmentation"
        row.detail = f"{kind}; needs bundle code ({code or 'expression ' + exc.key})"
        return row, None, None
    except DeepMedError as exc:
        message = str(exc).split(": ", 1)[-1][:140]
        if code and reason is None and dims == 3:
            row.status, row.detail = "trusted", f"needs bundle code ({code}): {message}"
        else:
            kind = ", ".join(k for k in ("2D" if dims == 2 else "", reason or "") if k) or "importer"
            row.detail = f"{kind}: {message}"
        return row, None, None
    if dims == 2:
        row.detail = "2D: deepmed imports volumes"
        return row, None, None
    return row, card, config


def _cpu_values(raw: dict) -> dict:
    roi = raw.get("inferer", {}).get("roi_size") if isinstance(raw.get("inferer"), dict) else None
    if isinstance(roi, list) and all(isinstance(v, int) for v in roi) and max(roi) > 64 and len(roi) == 3:
        return {"inferer#roi_size": [64, 64, 64]}
    return {}


# ---- fidelity ---------------------------------------------------------------------------------------------
def monai_parser(bundle: Path, config_path: Path, values: dict):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config_path))
    parser["bundle_root"] = str(bundle)
    parser["network_def"] = {k: v for k, v in parser["network_def"].items() if k != "img_size"}  # MONAI >= 1.5
    transforms = parser["preprocessing"]["transforms"]
    for transform in parser[transforms[2:]] if isinstance(transforms, str) else transforms:
        if isinstance(transform, dict) and transform.get("reader") == "ITKReader":
            transform["reader"] = "NibabelReader"  # itk is not installed; deepmed reads no file through MONAI
    for key, value in values.items():
        parser[key] = value
    return parser


def scans(folder: Path, spacing, channels: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for channel in range(channels):
        array = rng.normal(40, 60, size=SIZE[::-1]).astype(np.float32)
        array[8:20, 10:30, 12:40] += 150 + 40 * channel
        image = sitk.GetImageFromArray(array)
        image.SetSpacing([float(s) for s in spacing])
        image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
        image.SetOrigin((30.0, 12.0, -40.0))
        paths.append(folder / f"scan_{channel}.nii.gz")
        sitk.WriteImage(image, str(paths[-1]))
    return paths


def fidelity(bundle: Path, card: dict, config: BundleConfig, work: Path) -> tuple[float, int]:
    """(share of identical voxels, labels in MONAI's result) for random weights on a synthetic scan."""
    from monai.data import decollate_batch, list_data_collate

    from deepmed.cli.main import main as deepmed

    values = dict(config.values)
    config_path = bundle / "configs" / config.path_name
    parser = monai_parser(bundle, config_path, values)
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    for module in network.modules():  # non-trivial batch-norm statistics: several labels, not one
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    weights, _ = checkpoint_of(config, bundle)
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), weights)
    inputs = scans(work, card["spacing"], len(card["inputs"]))
    os.environ["DEEPMED_LIBRARY"] = str(work / "library")
    sets = [a for k, v in values.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    if deepmed(["zoo", "import", str(bundle), *sets]) != 0:
        raise DeepMedError("deepmed zoo import failed after the config was accepted")
    ours_path = work / ("ours.seg.nrrd" if card["output_kind"] == "overlapping_masks" else "ours.nii.gz")
    if deepmed(["infer", "--model", card["id"], *map(str, inputs), "-o", str(ours_path), "--device", "cpu",
                "--progress", "none"]) != 0:
        raise DeepMedError("deepmed infer failed")
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(ours_path)))
    network.eval()
    pre, inferer, post = (parser.get_parsed_content(k) for k in ("preprocessing", "inferer", "postprocessing"))
    key = card["task"]["image_key"]
    data = pre({key: str(inputs[0]) if len(inputs) == 1 else [str(p) for p in inputs]})
    batch = list_data_collate([data])
    with torch.no_grad():
        prediction = inferer(batch[key], network)
    expected = np.asarray(post(decollate_batch({key: batch[key], "pred": prediction})[0])["pred"])
    expected = expected[0].transpose(2, 1, 0) if expected.shape[0] == 1 else expected.transpose(3, 2, 1, 0)
    return float((ours == expected).mean()), len(np.unique(expected))


def survey(zoo: Path, only: list[str]) -> list[Row]:
    rows = []
    for folder in sorted(p for p in (zoo / "models").iterdir() if (p / "configs" / "metadata.json").is_file()):
        if only and folder.name not in only:
            continue
        with tempfile.TemporaryDirectory(prefix="zoo-survey-") as temporary:
            work = Path(temporary)
            bundle = work / folder.name
            shutil.copytree(folder, bundle, ignore=shutil.ignore_patterns("models", "*.pt", "*.ts", "*.zip"))
            row, card, config = classify(bundle)
            if card is not None:
                try:
                    agreement, labels = fidelity(bundle, card, config, work)
                    row.status = "identical" if agreement >= 0.999 else "differs"
                    sets = ", ".join(f"{k}={json.dumps(v)}" for k, v in config.values.items())
                    row.detail = (f"{100 * agreement:.2f}% identical voxels, {labels} labels in MONAI's result, "
                                  f"{card['network']['name']}" + (f" (both with --set {sets})" if sets else ""))
                except Exception as exc:  # the survey reports every bundle, whatever fails
                    row.status, row.detail = "differs", f"check failed: {type(exc).__name__}: {str(exc)[:120]}"
                    traceback.print_exc()
        print(f"{row.name}: {row.status}: {row.detail}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def short_reason(detail: str) -> str:
    """The refusal without its list of what is supported (the table stays readable)."""
    detail = re.sub(r" \((BasicUNet|SimpleInferer)[^)]*\)?", "", detail)
    return re.sub(r"; supported: .*", "", detail)


def markdown(rows: list[Row], commit: str) -> str:
    counts = {s: sum(r.status == s for r in rows) for s in ("identical", "trusted", "refused", "differs")}
    lines = [f"Surveyed: {len(rows)} bundles of `Project-MONAI/model-zoo` ({commit}); imported and identical: "
             f"{counts['identical']}; needs bundle code (trusted mode): {counts['trusted']}; refused: "
             f"{counts['refused']}; imported but different: {counts['differs']}.", "",
             "| bundle | input | task | result | detail |", "|---|---|---|---|---|"]
    names = {"identical": "imported, identical", "trusted": "needs bundle code (trusted mode)",
             "refused": "refused", "differs": "**differs**"}
    for r in rows:
        lines.append(f"| {r.name} | {r.dims} | {r.task} | {names[r.status]} | {short_reason(r.detail).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", type=Path, help="a checkout of Project-MONAI/model-zoo (its models/ folder)")
    parser.add_argument("--out", type=Path, help="write the markdown table here (default: print it)")
    parser.add_argument("--only", nargs="*", default=[], help="survey only these bundles")
    parser.add_argument("--commit", default="local checkout", help="the checkout's commit, for the table")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    table = markdown(survey(args.zoo, args.only), args.commit)
    if args.out:
        args.out.write_text(table, encoding="utf-8")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
