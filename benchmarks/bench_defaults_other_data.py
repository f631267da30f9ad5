"""Each application's DEFAULTS on data its demo did not make (real scans from ../shared/data), to a time budget.

    python benchmarks/bench_defaults_other_data.py --app classification [--budget 120] [--seeds 0 1] [--out r.json]
    python benchmarks/bench_defaults_other_data.py --app all

Only what the task needs is set (application, classes / conditions, the CPU, a seed, the time budget); batch
size, learning rate, network, patch and schedule are the application's own plan. Every model is scored on a
held-out subject or region against the named baseline:

* classification: patches of a real T1 (pyradiomics brain1 trains, brain2 tests), class = the head region
  (inferior vs superior slices), each patch z-scored (the application's normalisation: mean intensity matched);
  baseline chance (balanced accuracy 0.5) and a logistic regression on first-order intensity features.
* case_regression: the same patches, value = the height of the patch centre in the head (% of its extent);
  baseline: the training mean (MAE).
* segmentation: TotalSegmentator's body CT (3 mm), upper slices train, lower slices test, 6 large structures;
  baseline: the nearest training slice's label map copied into every test slice.
* superres: brain1 (high resolution, 4x4x1 simulated) trains, brain2 tests; baseline B-spline (PSNR).
* autoencoder: 16x16x8-voxel patches of the body CT, upper half trains, lower half tests; baseline PCA (same latent).
* cgan: brain1/brain2 patches conditioned on their tissue share (a real quantity); generated images are measured
  (share above the air/tissue threshold) and correlated with the request; a generator that ignores the
  condition scores r = 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.data.manifest import Dataset
from deepmed.inference.predictor import Predictor
from deepmed.training.driver import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BRAINS = {name: SHARED / "pyradiomics" / f"{name}_image.nrrd" for name in ("brain1", "brain2")}
CT, CT_LABELS = SHARED / "totalsegmentator" / "example_ct_sm.nii.gz", SHARED / "totalsegmentator" / "example_seg.nii.gz"


# ---- data --------------------------------------------------------------------------------------------------
def head_mask(array: np.ndarray) -> np.ndarray:
    return array > 0.15 * np.percentile(array, 99)


def brain_patches(name: str, count: int, seed: int, size=(64, 64, 4)) -> list[dict]:
    """Patches (x, y, z voxels) centred inside the head: image, region class, height (%) and tissue share."""
    image = sitk.ReadImage(str(BRAINS[name]), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    mask = head_mask(array)
    slices = np.nonzero(mask.reshape(mask.shape[0], -1).mean(axis=1) > 0.05)[0]
    low, high = int(slices.min()), int(slices.max())
    rng = np.random.default_rng(seed)
    patches = []
    while len(patches) < count:
        z = int(rng.integers(low + size[2] // 2, high - size[2] // 2 + 1))
        ys, xs = np.nonzero(mask[z])
        pick = int(rng.integers(len(ys)))
        start = [int(np.clip(xs[pick] - size[0] // 2, 0, array.shape[2] - size[0])),
                 int(np.clip(ys[pick] - size[1] // 2, 0, array.shape[1] - size[1])), z - size[2] // 2]
        patch = sitk.RegionOfInterest(image, list(size), start)
        height = 100.0 * (z - low) / max(1, high - low)
        share = float(head_mask_of(sitk.GetArrayFromImage(patch), array).mean())
        region = "inferior" if height < 40 else ("superior" if height > 60 else None)
        patches.append({"image": patch, "region": region, "height": height, "share": share})
    return patches


def head_mask_of(patch: np.ndarray, whole: np.ndarray) -> np.ndarray:
    return patch > 0.15 * np.percentile(whole, 99)


def write_cases(folder: Path, cases: list[dict], key: str | None, prefix: str) -> list[dict]:
    entries = []
    for index, case in enumerate(cases):
        path = folder / f"{prefix}{index:03d}.nii.gz"
        sitk.WriteImage(case["image"], str(path))
        entry = {"id": f"{prefix}{index:03d}", "image": path.name}
        if key is not None:
            entry["value"] = case[key]
        entries.append(entry)
    return entries


EXTRA: list[str] = []  # --set: settings beside the defaults (e.g. the old generic batch 2 / lr 0.001, to compare)


def fit(manifest: Path, out: Path, app: str, budget: float, seed: int, settings=()) -> tuple[Path, dict]:
    started = time.time()
    model = train(manifest, out, app=app, time_limit=budget, progress="none",
                  overrides=["training.device=cpu", f"training.seed={seed}", *settings, *EXTRA])
    plan = json.loads((model / "plan.json").read_text())
    return model, {"batch_size": plan["schedule"]["batch_size"], "lr": plan["schedule"]["lr"],
                   "train_seconds": round(time.time() - started, 1)}


# ---- the applications --------------------------------------------------------------------------------------
def case_level(app: str, folder: Path, budget: float, seed: int) -> dict:
    from sklearn.linear_model import LogisticRegression

    from deepmed.evaluation.case_level_metrics import classification_metrics, value_metrics

    key = "region" if app == "classification" else "height"
    train_cases = [c for c in brain_patches("brain1", 240, seed) if c[key] is not None][:80]
    test_cases = [c for c in brain_patches("brain2", 200, 100 + seed) if c[key] is not None][:60]
    entries = write_cases(folder, train_cases, key, "tr")
    manifest = {"name": f"brain_{key}", "channel_names": {"0": "T1"}, "training": entries}
    if app == "classification":
        manifest["labels"] = {"inferior": 0, "superior": 1}
    (folder / "dataset.json").write_text(json.dumps(manifest))
    model, info = fit(folder / "dataset.json", folder / "model", app, budget, seed)
    predictor = Predictor(model, "cpu")
    predictions = [predictor.predict([c["image"]]).values for c in test_cases]
    if app == "case_regression":
        reference = [c["height"] for c in test_cases]
        result = value_metrics(reference, [p["value"] for p in predictions])
        baseline = float(np.mean(np.abs(np.asarray(reference) - np.mean([c["height"] for c in train_cases]))))
        return {**info, "mae": result["mae"], "baseline_mae_training_mean": baseline, "test_cases": len(test_cases)}
    classes = ["inferior", "superior"]
    reference = [classes.index(c["region"]) for c in test_cases]
    probabilities = [[p[f"p_{name}"] for name in classes] for p in predictions]
    metrics = classification_metrics(reference, probabilities, classes)
    features = lambda cases: np.asarray([first_order(sitk.GetArrayFromImage(c["image"])) for c in cases])  # noqa: E731
    logistic = LogisticRegression(max_iter=1000).fit(features(train_cases),
                                                     [classes.index(c["region"]) for c in train_cases])
    chosen = logistic.predict(features(test_cases))
    baseline = classification_metrics(reference, np.eye(2)[chosen].tolist(), classes)["balanced_accuracy"]
    return {**info, "balanced_accuracy": metrics["balanced_accuracy"], "baseline_chance": 0.5,
            "baseline_first_order_logistic": baseline, "test_cases": len(test_cases)}


def first_order(array: np.ndarray) -> list[float]:
    z = (array - array.mean()) / (array.std() + 1e-6)
    return [float(np.percentile(z, q)) for q in (5, 25, 50, 75, 95)] + [float((z ** 3).mean()), float((z ** 4).mean())]


def segmentation(folder: Path, budget: float, seed: int) -> dict:
    image, labels = sitk.ReadImage(str(CT)), sitk.ReadImage(str(CT_LABELS))
    array = sitk.GetArrayFromImage(labels)
    cut = array.shape[0] // 2
    upper, lower = array[cut:], array[:cut]  # z index up = superior (LPS, direction +z)
    counts = [(int(((upper == v).sum()) + (lower == v).sum()), v) for v in np.unique(array) if v
              and (upper == v).sum() > 500 and (lower == v).sum() > 500]
    chosen = [v for _, v in sorted(counts, reverse=True)[:6]]
    remapped = np.zeros_like(array)
    for index, value in enumerate(chosen, 1):
        remapped[array == value] = index
    label = sitk.GetImageFromArray(remapped)
    label.CopyInformation(labels)
    size = list(image.GetSize())
    parts = {"train": (cut, size[2] - cut), "test": (0, cut)}
    for part, (start, depth) in parts.items():
        for name, volume in (("image", image), ("label", label)):
            region = sitk.RegionOfInterest(volume, size[:2] + [depth], [0, 0, start])
            sitk.WriteImage(region, str(folder / f"{part}_{name}.nii.gz"))
    names = {f"structure_{v}": i for i, v in enumerate(chosen, 1)}
    manifest = {"name": "ct_upper_lower", "channel_names": {"0": "CT"}, "labels": {"background": 0, **names},
                "training": [{"id": "upper", "image": "train_image.nii.gz", "label": "train_label.nii.gz"}]}
    (folder / "dataset.json").write_text(json.dumps(manifest))
    model, info = fit(folder / "dataset.json", folder / "model", "segmentation", budget, seed)
    predictor = Predictor(model, "cpu")
    test_image = sitk.ReadImage(str(folder / "test_image.nii.gz"))
    predicted = predictor.write(predictor.predict([test_image]), folder / "test_prediction.nii.gz")
    reference = folder / "test_label.nii.gz"
    nearest = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "train_label.nii.gz")))[0]
    copied = sitk.GetImageFromArray(np.repeat(nearest[None], cut, axis=0))
    copied.CopyInformation(sitk.ReadImage(str(reference)))
    sitk.WriteImage(copied, str(folder / "baseline.nii.gz"))
    score = lambda path: dice_per_label(sitk.ReadImage(str(path)), sitk.ReadImage(str(reference)), len(chosen))  # noqa: E731
    model_dice, baseline_dice = score(predicted), score(folder / "baseline.nii.gz")
    return {**info, "mean_dice": float(np.mean(model_dice)), "dice": model_dice,
            "baseline_nearest_slice_mean_dice": float(np.mean(baseline_dice)), "structures": [int(v) for v in chosen]}


def dice_per_label(prediction: sitk.Image, reference: sitk.Image, count: int) -> list[float]:
    a, b = sitk.GetArrayFromImage(prediction), sitk.GetArrayFromImage(reference)
    return [round(float(2 * ((a == v) & (b == v)).sum() / max(1, (a == v).sum() + (b == v).sum())), 4)
            for v in range(1, count + 1)]


def superres(folder: Path, budget: float, seed: int) -> dict:
    from deepmed.evaluation.upsampling_metrics import scores_with_baseline
    from deepmed.transforms.resolution import crop_to_multiple, degrade

    factor = [4, 4, 1]
    sitk.WriteImage(sitk.ReadImage(str(BRAINS["brain1"]), sitk.sitkFloat32), str(folder / "brain1.nii.gz"))
    (folder / "dataset.json").write_text(json.dumps({"name": "brain1", "training": [
        {"id": "brain1", "image": "brain1.nii.gz"}]}))
    model, info = fit(folder / "dataset.json", folder / "model", "superres", budget, seed,
                      [f"task.factor={json.dumps(factor)}", "training.val_fraction=0"])
    high = crop_to_multiple(sitk.ReadImage(str(BRAINS["brain2"]), sitk.sitkFloat32), factor)
    low = degrade(high, factor)
    scores = scores_with_baseline(high, Predictor(model, "cpu").predict(low).output, low, factor)
    return {**info, "psnr": scores["psnr"], "baseline_bspline_psnr": scores["psnr_bspline"],
            "ssim": scores["ssim"], "baseline_bspline_ssim": scores["ssim_bspline"]}


def ct_patches(part: str, count: int, seed: int, size=(16, 16, 8)) -> list[dict]:
    """Patches (x, y, z voxels) of the body CT's upper (train) or lower (test) half, centred in the body."""
    image = sitk.ReadImage(str(CT), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    cut = array.shape[0] // 2
    low, high = (cut, array.shape[0] - size[2]) if part == "train" else (0, cut - size[2])
    body = array > -500
    rng = np.random.default_rng(seed)
    patches = []
    while len(patches) < count:
        z = int(rng.integers(low, high + 1))
        ys, xs = np.nonzero(body[z + size[2] // 2])
        pick = int(rng.integers(len(ys)))
        start = [int(np.clip(xs[pick] - size[0] // 2, 0, array.shape[2] - size[0])),
                 int(np.clip(ys[pick] - size[1] // 2, 0, array.shape[1] - size[1])), z]
        patches.append({"image": sitk.RegionOfInterest(image, list(size), start)})
    return patches


def autoencoder(folder: Path, budget: float, seed: int) -> dict:
    from deepmed.applications.autoencoder import model_grid_input, model_grid_reconstruction
    from deepmed.evaluation.reconstruction_metrics import compare_with_pca

    train_cases, test_cases = ct_patches("train", 200, seed), ct_patches("test", 40, 100 + seed)
    entries = write_cases(folder, train_cases, None, "tr")
    test_entries = write_cases(folder, test_cases, None, "te")
    (folder / "dataset.json").write_text(json.dumps({"name": "ct_patches", "channel_names": {"0": "CT"},
                                                     "training": entries}))
    model, info = fit(folder / "dataset.json", folder / "model", "autoencoder", budget, seed)
    predictor = Predictor(model, "cpu")
    card = predictor.card
    dataset = Dataset.load(folder / "dataset.json")
    arrays = lambda paths: np.stack([model_grid_input([p], card) for p in paths])  # noqa: E731
    train_arrays = arrays([c.images[0] for c in dataset.training])
    test_arrays = arrays([folder / e["image"] for e in test_entries])
    reconstructions = np.stack([model_grid_reconstruction(predictor.networks, a, card) for a in test_arrays])
    data_range = max(channel.statistics["range"] for channel in card.inputs)
    latent = card.network.args["latent_size"]
    result = compare_with_pca(train_arrays, test_arrays, reconstructions, latent, data_range)
    return {**info, "mse": result["model"]["mse"], "baseline_pca_mse": result["pca"]["mse"],
            "psnr": result["model"]["psnr"], "baseline_pca_psnr": result["pca"]["psnr"], "latent": latent}


def cgan(folder: Path, budget: float, seed: int) -> dict:
    from deepmed.evaluation import generation_metrics as measures

    cases = brain_patches("brain1", 120, seed, size=(32, 32, 4))
    entries = write_cases(folder, cases, "share", "tr")
    for entry in entries:
        entry["value"] = [entry["value"]]
    (folder / "dataset.json").write_text(json.dumps({"name": "brain_tissue_share", "channel_names": {"0": "T1"},
                                                     "training": entries}))
    model, info = fit(folder / "dataset.json", folder / "model", "cgan", budget, seed,
                      ["task.conditions=[tissue_share]"])
    predictor = Predictor(model, "cpu")
    shares = [float(c["share"]) for c in cases]
    arrays = [sitk.GetArrayFromImage(c["image"]) for c in cases]
    threshold = 0.15 * float(np.percentile(np.concatenate([a.ravel() for a in arrays]), 99))
    requested, measured = [], []
    for share in np.linspace(np.percentile(shares, 10), np.percentile(shares, 90), 5):
        for sample in range(4):
            generated = sitk.GetArrayFromImage(predictor.predict([], condition=[float(share)], seed=sample).output)
            requested.append(float(share))
            measured.append(float((generated > threshold).mean()))
    real = [float((a > threshold).mean()) for a in arrays]  # the measure on the real patches: r close to 1
    return {**info, "r_tissue_share": measures.correlation(measured, requested), "baseline_r_unconditioned": 0.0,
            "r_of_the_measure_on_real_patches": measures.correlation(real, shares),
            "requested": [round(v, 3) for v in requested], "measured": [round(v, 3) for v in measured]}


CHECKS = {"classification": lambda f, b, s: case_level("classification", f, b, s),
          "case_regression": lambda f, b, s: case_level("case_regression", f, b, s),
          "segmentation": segmentation, "superres": superres, "autoencoder": autoencoder, "cgan": cgan}


def main() -> int:
    import torch

    torch.set_num_threads(2)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=[*CHECKS, "all"], default="all")
    parser.add_argument("--budget", type=float, default=120.0, help="training wall time per run (s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting beside the defaults (to compare other values); none: defaults only")
    args = parser.parse_args()
    EXTRA.extend(args.settings)
    if not all(path.is_file() for path in (*BRAINS.values(), CT, CT_LABELS)):
        sys.exit(f"the real scans of {SHARED} are missing")
    results = []
    for app in (list(CHECKS) if args.app == "all" else [args.app]):
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                measured = CHECKS[app](Path(tmp), args.budget, seed)
            result = {"app": app, "seed": seed, "budget_s": args.budget, "settings": args.settings, **measured}
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
