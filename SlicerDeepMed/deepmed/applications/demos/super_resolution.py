"""``deepmed demo --app superres``: learn to upsample, on synthetic phantoms and on real brain MR, and compare
with B-spline interpolation on held-out data (PSNR, SSIM). Exit code 0 only if the model beats B-spline.

1. Synthetic: textured phantoms with sharp edges (ellipsoids and boxes of random contrast, striped texture,
   a smooth background, mild noise), 48^3 at 1 mm; their low-resolution side is simulated (factor 2x2x2,
   ``deepmed.transforms.resolution.degrade``); 8 train, 2 validate, 4 held out.
2. Real scans (``../shared/data/pyradiomics``, brain MR at 0.78 x 0.78 x 6.5 mm): DLTK's 4x in-plane
   (factor 4x4x1) learnt from brain1's high-resolution slices (simulated low-resolution side), tested on
   brain2, a held-out scan.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.applications.demos import demo_folder, shared_scan
from deepmed.transforms.resolution import crop_to_multiple, degrade

SYNTHETIC = {"factor": [2, 2, 2], "size": 48, "train": 10, "test": 4, "patch": [16, 16, 16], "epochs": 12}
REAL = {"factor": [4, 4, 1], "crop": [192, 192, 0], "patch": [16, 16, 8], "epochs": 12}
COMMON = {
    "app": "superres",
    "network": {"name": "subpixel_sr", "args": {"features": 24, "blocks": 3}},
    "loss": {"name": "l1"},
    "optimizer": {"weight_decay": 0.0},
    "augmentation": {"flip": True},
    "training": {"iterations_per_epoch": 20, "val_every": 4, "seed": 0, "device": "cpu"},
}


def phantom(seed: int, size: int = 48, spacing: float = 1.0) -> sitk.Image:
    """A textured phantom with edges: a smooth background, 6-9 ellipsoids and boxes of random contrast (some
    striped), mild noise. Deterministic per seed; values roughly in [0, 1.5]."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij")
    array = 0.2 + 0.1 * np.sin(2.0 * x + rng.uniform(0, 6)) * np.cos(1.5 * y + rng.uniform(0, 6))
    for _ in range(int(rng.integers(6, 10))):
        centre = rng.uniform(-0.6, 0.6, 3)
        radii = rng.uniform(0.12, 0.45, 3)
        d = [(c - m) / r for c, m, r in zip((z, y, x), centre, radii)]
        inside = (d[0] ** 2 + d[1] ** 2 + d[2] ** 2 <= 1) if rng.random() < 0.6 else np.max(np.abs(d), axis=0) <= 1
        level = rng.uniform(0.3, 1.2)
        if rng.random() < 0.5:  # stripes of a random period and orientation
            normal = rng.normal(size=3)
            normal /= np.linalg.norm(normal)
            phase = (normal[0] * z + normal[1] * y + normal[2] * x) * rng.uniform(8, 16)
            level = level * (0.75 + 0.25 * np.sign(np.sin(phase)))
        array = np.where(inside, level, array)
    array = array + rng.normal(0, 0.01, array.shape)
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing([spacing] * 3)
    image.SetOrigin([float(v) for v in rng.uniform(-50, 50, 3)])
    return image


def _write_manifest(folder: Path, name: str, train_files: list[str]) -> Path:
    """High-resolution images only (a CSV manifest: no label column); the training pairs are simulated by the
    documented degradation."""
    path = folder / f"{name}.csv"
    rows = ["id,image"] + [f"{f.split('.')[0]},{f}" for f in train_files]
    path.write_text("\n".join(rows) + "\n")
    return path


def _held_out(predictor, highs: dict[str, sitk.Image], factor: list[int], folder: Path, log) -> list[dict]:
    """Simulate each held-out case's low-resolution image, upsample it, score it beside B-spline."""
    from deepmed.evaluation.upsampling_metrics import scores_with_baseline
    from deepmed.io.image_io import write_image

    rows = []
    for case_id, high in highs.items():
        high = crop_to_multiple(high, factor)
        low = degrade(high, factor)
        write_image(low, folder / f"{case_id}_low.nii.gz")
        result = predictor.predict(low)
        write_image(result.output, folder / f"{case_id}_upsampled.nii.gz")
        scores = scores_with_baseline(high, result.output, low, factor)
        rows.append({"case": case_id, **scores})
        log(f"      {case_id:12s} PSNR {scores['psnr']:6.2f} dB (B-spline {scores['psnr_bspline']:6.2f})   "
            f"SSIM {scores['ssim']:.4f} (B-spline {scores['ssim_bspline']:.4f})")
    return rows


def _summary(rows: list[dict], title: str, log) -> dict:
    means = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "psnr_bspline", "ssim", "ssim_bspline")}
    beats = means["psnr"] > means["psnr_bspline"]
    log(f"  {title}: model PSNR {means['psnr']:.2f} dB vs B-spline {means['psnr_bspline']:.2f} dB "
        f"({means['psnr'] - means['psnr_bspline']:+.2f}); SSIM {means['ssim']:.4f} vs {means['ssim_bspline']:.4f} "
        f"-> {'beats' if beats else 'does NOT beat'} B-spline")
    return {**means, "beats_bspline": beats, "cases": len(rows)}


def _train(manifest: Path, out: Path, factor: list[int], patch: list[int], epochs: int, progress):
    from deepmed.training.driver import train

    config = {**COMMON, "task": {"factor": factor}, "data": {"patch_size": patch},
              "training": {**COMMON["training"], "epochs": epochs}}
    return train(manifest, out, config=config, progress=progress)


def synthetic_part(out: Path, epochs: int | None, progress, log) -> dict:
    from deepmed.inference.predictor import Predictor
    from deepmed.io.image_io import write_image

    spec = SYNTHETIC
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    n = spec["train"] + spec["test"]
    log(f"[synthetic 1/3] {n} textured phantoms {spec['size']}^3 at 1 mm in {data}; low resolution simulated "
        f"by the factor {spec['factor']} (Gaussian blur, FWHM one coarse voxel; sampling at coarse centres)")
    names = []
    for i in range(n):
        names.append(f"phantom_{i:02d}.nii.gz")
        write_image(phantom(i, spec["size"]), data / names[-1])
    manifest = _write_manifest(data, "phantoms", names[:spec["train"]])
    log(f"[synthetic 2/3] training on {spec['train']} phantoms (20% of them validate), "
        f"{epochs or spec['epochs']} epochs")
    model = _train(manifest, out / "model", spec["factor"], spec["patch"], epochs or spec["epochs"], progress)
    log(f"[synthetic 3/3] {spec['test']} held-out phantoms: upsampled by the model vs B-spline")
    predictor = Predictor(model, device="cpu")
    (out / "test").mkdir(exist_ok=True)
    highs = {Path(name).name.split(".")[0]: sitk.ReadImage(str(data / name)) for name in names[spec["train"]:]}
    return _summary(_held_out(predictor, highs, spec["factor"], out / "test", log), "synthetic held-out", log)


def _crop(image: sitk.Image, crop: list[int]) -> sitk.Image:
    """The central ``crop`` voxels per axis (0: the whole axis)."""
    size = [c if 0 < c < n else n for c, n in zip(crop, image.GetSize())]
    start = [(n - s) // 2 for n, s in zip(image.GetSize(), size)]
    return sitk.Cast(sitk.RegionOfInterest(image, size, start), sitk.sitkFloat32)


def real_part(out: Path, epochs: int | None, progress, log) -> dict | None:
    from deepmed.inference.predictor import Predictor
    from deepmed.io.image_io import write_image

    brain1 = shared_scan()
    brain2 = brain1.with_name("brain2_image.nrrd") if brain1 is not None else None
    if brain1 is None or not brain2.is_file():
        log("[real] no brain MR found in ../shared/data/pyradiomics: skipped")
        return None
    spec = REAL
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    high_train = _crop(sitk.ReadImage(str(brain1)), spec["crop"])
    write_image(high_train, data / "brain1_high.nii.gz")
    manifest = _write_manifest(data, "brain_mr", ["brain1_high.nii.gz"])
    log(f"[real 1/2] brain MR (pyradiomics brain1, central {high_train.GetSize()} at "
        f"{tuple(round(s, 2) for s in high_train.GetSpacing())} mm) as high-resolution truth; factor "
        f"{spec['factor']} (DLTK's 4x in-plane); training {epochs or spec['epochs']} epochs")
    model = _train(manifest, out / "model", spec["factor"], spec["patch"], epochs or spec["epochs"], progress)
    log("[real 2/2] held-out scan brain2: upsampled by the model vs B-spline")
    predictor = Predictor(model, device="cpu")
    (out / "test").mkdir(exist_ok=True)
    highs = {"brain2": _crop(sitk.ReadImage(str(brain2)), spec["crop"])}
    return _summary(_held_out(predictor, highs, spec["factor"], out / "test", log), "real held-out scan", log)


def run(out: Path, epochs: int | None = None, progress="tqdm", log=print) -> dict:
    """Both parts into ``out/synthetic`` and ``out/real``; returns their summaries and the seconds spent."""
    out = demo_folder(out, ("synthetic", "real"))
    started = time.time()
    results = {}
    for part, function in (("synthetic", synthetic_part), ("real", real_part)):
        (out / part).mkdir(parents=True)
        part_start = time.time()
        summary = function(out / part, epochs, progress, log)
        if summary is not None:
            results[part] = {**summary, "seconds": round(time.time() - part_start, 1)}
    results["seconds"] = round(time.time() - started, 1)
    (out / "superres_results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def run_demo(out: Path, epochs: int | None, progress) -> int:
    """``deepmed demo --app superres``: exit 0 when the model beats B-spline (PSNR) on every part's held-out data."""
    results = run(out, epochs, progress, log=lambda message: print(message, flush=True))
    parts = [v for v in results.values() if isinstance(v, dict)]
    ok = bool(parts) and all(p["beats_bspline"] for p in parts)
    print(f"super-resolution demo: {'beats' if ok else 'does NOT beat'} B-spline on held-out data "
          f"({results['seconds']:.0f} s); results in {Path(out) / 'superres_results.json'}", flush=True)
    return 0 if ok else 1
