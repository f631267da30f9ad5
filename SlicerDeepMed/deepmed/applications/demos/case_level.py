"""Demos of the case-level applications on a synthetic MR-like head cohort (DLTK's sex / age from T1, in
miniature): ``deepmed demo --app classification`` and ``deepmed demo --app case_regression``.

Each head is an ellipsoid (skull, textured brain, two dark lateral ventricles) of random size, position and
tilt, in an image of random spacing, orientation and origin, with a smooth multiplicative bias field, Rician
noise and an arbitrary intensity scale. Its class is the head's shape (``round``: front-back over left-right
axis ratio 1.02-1.17; ``long``: 1.21-1.38; 40 % / 60 %); its value, a stand-in for age, is the ventricle index:
100 x the ventricles' size relative to the brain (12-42). The demo trains on the CPU, predicts held-out cases
with ``deepmed infer`` and compares them with the named baseline: chance for classes (balanced accuracy 0.5),
the training mean for values.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

from deepmed.applications.demos import demo_folder
from deepmed.phantoms.synthetic import random_direction

CLASSES = {"round": (1.02, 1.17), "long": (1.21, 1.38)}
LONG_SHARE = 0.6
VENTRICLE_INDEX = (12.0, 42.0)
FOV_MM = 200.0
#: Training settings of both demos (CPU). Anisotropic scaling would change the head's shape, the very
#: property the classes differ by: off for classes; values (a ratio of sizes) are unchanged by it.
DEMO_CONFIG = {
    "network": {"name": "densenet", "args": {}},
    "optimizer": {"weight_decay": 1e-4},
    "data": {"max_patch_voxels": 40 ** 3},
    "training": {"epochs": 30, "iterations_per_epoch": 12, "val_every": 3, "seed": 0,
                 "device": "cpu", "val_fraction": 0.2},
    "augmentation": {"probability": 0.3, "elastic": False},
}
SUCCESS = {"classification": 0.25, "case_regression": 0.75}  # above chance by; at most this share of baseline MAE
EPOCHS = {"classification": 10, "case_regression": 30}  # measured: enough for each to settle


def head_image(rng: np.random.Generator, elongation: float, ventricle_index: float, fov_mm: float = FOV_MM,
               voxels: int = 64) -> sitk.Image:
    """One synthetic T1-like head (float32) with the given shape and ventricle index."""
    spacing = fov_mm / voxels * np.array([rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1), rng.uniform(1.1, 1.4)])
    size = np.round(fov_mm * rng.uniform(0.95, 1.05, 3) / spacing).astype(int)
    direction = random_direction(rng)
    image = sitk.Image([int(n) for n in size], sitk.sitkFloat32)
    image.SetSpacing(spacing.tolist())
    image.SetDirection(direction.flatten().tolist())
    image.SetOrigin((rng.uniform(-100, 100, 3) - direction @ (size * spacing / 2)).tolist())
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")[::-1], axis=-1)
    world = np.asarray(image.GetOrigin()) + (index * spacing) @ direction.T  # (z, y, x, 3) in mm
    box_centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in size]))
    centre = box_centre + rng.normal(0, 8, 3)
    rotation = Rotation.from_rotvec(rng.normal(size=3) / np.sqrt(3) * np.deg2rad(rng.uniform(0, 10))).as_matrix()
    local = (world - centre) @ rotation  # head axes: x left-right, y front-back, z up-down
    radius = rng.uniform(55, 72)
    radii = np.array([radius, radius * elongation, radius * rng.uniform(0.8, 0.95)])
    head = np.sqrt(np.sum((local / radii) ** 2, axis=-1))
    ratio = ventricle_index / 100.0
    ventricle_radii = radii * 0.88 * ratio * np.array([0.45, 1.0, 0.55])
    ventricles = np.zeros(head.shape, dtype=bool)
    for side in (-1, 1):
        offset = np.array([side * ventricle_radii[0] * 1.3, 0.0, 0.0])
        ventricles |= np.sum(((local - offset) / ventricle_radii) ** 2, axis=-1) <= 1.0
    texture = gaussian_filter(rng.normal(size=head.shape), 1.5)
    signal = np.where(head <= 0.88, 0.65 + 0.6 * texture, 0.0)
    signal = np.where((head > 0.9) & (head <= 1.0), 1.0, signal)  # skull / scalp
    signal = np.where(ventricles & (head <= 0.88), 0.18, signal)
    bias = np.exp(gaussian_filter(rng.normal(size=head.shape), 12) * 30 * rng.uniform(0.5, 1.0))
    sigma = rng.uniform(0.03, 0.06)
    noisy = np.abs(signal * bias + sigma * (rng.normal(size=head.shape) + 1j * rng.normal(size=head.shape)))
    array = (noisy * rng.uniform(300, 1500)).astype(np.float32)
    result = sitk.GetImageFromArray(array)
    result.CopyInformation(image)
    return result


def write_cohort(folder: Path, n_cases: int, n_test: int, seed: int = 0, voxels: int = 64) -> Path:
    """Images and ``dataset.json``: ``training`` (train + validation) and held-out ``test`` cases, each with
    its class (``classes`` manifest) or its ventricle index (``values`` manifest); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = {"classification": [], "case_regression": []}
    for i in range(n_cases):
        name = "long" if rng.random() < LONG_SHARE else "round"
        elongation = rng.uniform(*CLASSES[name])
        ventricle_index = float(rng.uniform(*VENTRICLE_INDEX))
        image = head_image(np.random.default_rng([seed, i]), elongation, ventricle_index, voxels=voxels)
        file = f"head{i:03d}_T1.nii.gz"
        sitk.WriteImage(image, str(folder / file), useCompression=True)
        entries["classification"].append({"id": f"head{i:03d}", "image": file, "value": name})
        entries["case_regression"].append({"id": f"head{i:03d}", "image": file, "value": round(ventricle_index, 2)})
    for app, cases in entries.items():
        manifest = {"name": f"heads_{app}", "channel_names": {"0": "T1"}, "training": cases[:n_cases - n_test],
                    "test": cases[n_cases - n_test:]}
        if app == "classification":
            manifest["labels"] = {name: index for index, name in enumerate(CLASSES)}
        (folder / f"{app}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def run_demo(app: str, out: Path, *, epochs: int | None = None, progress="tqdm", n_cases: int = 120,
             n_test: int = 40, log=print) -> dict:
    """Generate (once), train, infer the held-out cases, evaluate against the baseline; returns the numbers."""
    from deepmed.data.manifest import Dataset
    from deepmed.evaluation.table_evaluation import evaluate_table, format_table_summary, write_outputs
    from deepmed.inference.predictor import Predictor
    from deepmed.training.driver import train

    out = demo_folder(out, ("model", "predictions"))
    started = time.time()
    data = out / "data"
    manifest = data / f"{app}.json"
    if not manifest.is_file():
        log(f"[1/4] generating {n_cases} synthetic heads in {data} ({n_test} held out)")
        write_cohort(data, n_cases, n_test)
    generated = time.time()
    config = {**DEMO_CONFIG, "app": app,
              "augmentation": {**DEMO_CONFIG["augmentation"], "scale": app != "classification"}}
    log(f"[2/4] training {app} ({DEMO_CONFIG['network']['name']}) on the CPU")
    model = train(manifest, out / "model", config=config, epochs=epochs or EPOCHS[app], progress=progress)
    trained = time.time()
    log("[3/4] predicting the held-out cases")
    Predictor(model, "cpu").predict_many(manifest, output=out / "predictions")
    log("[4/4] evaluating against the manifest's values")
    result = evaluate_table(manifest, out / "predictions" / "results.csv")
    write_outputs(result, out / "metrics.csv")
    log(format_table_summary(result))
    dataset = Dataset.load(manifest)
    if result.classes:
        metric, baseline = result.metrics["balanced_accuracy"], 1.0 / len(result.classes)
        passed = metric >= baseline + SUCCESS[app]
        line = f"held-out balanced accuracy {metric:.3f} vs chance {baseline:.3f} (AUC {result.metrics['auc']:.3f})"
    else:
        train_mean = float(np.mean([c.value for c in dataset.training]))
        baseline = float(np.mean([abs(row["reference"] - train_mean) for row in result.rows]))
        metric = result.metrics["mae"]
        passed = metric <= SUCCESS[app] * baseline
        line = (f"held-out MAE {metric:.2f} vs {baseline:.2f} predicting the training mean "
                f"(R² {result.metrics.get('r2', float('nan')):.3f})")
    seconds = time.time() - started
    log(f"{line} on {len(result.rows)} cases; {seconds:.0f} s in all ({generated - started:.0f} s data, "
        f"{trained - generated:.0f} s training); metrics in {out / 'metrics.csv'}")
    return {"metric": metric, "baseline": baseline, "passed": passed, "metrics": result.metrics,
            "seconds": seconds, "train_seconds": trained - generated, "model_dir": model}


def classification_demo(out: Path, epochs: int | None, progress: str) -> int:
    summary = run_demo("classification", out, epochs=epochs, progress=progress, log=lambda m: print(m, flush=True))
    return 0 if summary["passed"] else 1


def value_demo(out: Path, epochs: int | None, progress: str) -> int:
    summary = run_demo("case_regression", out, epochs=epochs, progress=progress, log=lambda m: print(m, flush=True))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(classification_demo(Path(sys.argv[1] if len(sys.argv) > 1 else "demo_output"), None, "tqdm"))
