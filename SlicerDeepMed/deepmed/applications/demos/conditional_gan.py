"""``deepmed demo --app cgan``: spheres whose radius and position are the conditions -> a conditional GAN ->
generated volumes measured: does the generated sphere follow the requested radius and shift?

Data: 80 cases on a 40^3 grid at 1.6 mm (64 mm box); a textured ball (mean 100, smooth noise) on a textured
background (mean 20) with a soft edge; condition 1 = radius in [6, 16] mm, condition 2 = shift of its centre
along x in [-12, 12] mm. Evaluation: a 5 x 5 grid of requested conditions, 3 seeds each; the generated ball's
equivalent radius and centroid are measured (Otsu threshold of the training data, largest component); Pearson r
of each measure with its requested condition must be >= 0.8. Intensity statistics inside/outside and the
histogram (Wasserstein-1) distance are compared with the training images'. A PNG shows the middle slices
(rows: radius, columns: shift).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.applications.demos import demo_folder

RADIUS = (6.0, 16.0)
SHIFT = (-12.0, 12.0)
SIZE, SPACING = 40, 1.6
REQUIRED_R = 0.8
MEAN_TOLERANCE = 0.1  # generated mean inside/outside within this share of the training intensity range
DEMO_CONFIG = {
    "app": "cgan",
    "task": {"conditions": ["radius", "shift"], "units": ["mm", "mm"], "image_size": 32,
             "generator_channels": 32, "discriminator_channels": 32, "generator_lr": 5e-4},  # the defaults
    "training": {"epochs": 12, "iterations_per_epoch": 25, "val_every": 4, "seed": 0,
                 "device": "cpu", "val_fraction": 0.1},
}


def sphere_image(radius: float, shift: float, seed: int) -> sitk.Image:
    """A textured ball of ``radius`` mm centred ``shift`` mm along x from the box centre (LPS, 1.6 mm)."""
    rng = np.random.default_rng(seed)
    axis = (np.arange(SIZE) - (SIZE - 1) / 2) * SPACING
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    distance = np.sqrt((x - shift) ** 2 + y ** 2 + z ** 2)
    inside = 1 / (1 + np.exp((distance - radius) / 0.8))  # soft edge
    texture = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(
        sitk.GetImageFromArray(rng.normal(0, 1, (SIZE,) * 3).astype(np.float32)), 1.0))
    texture = texture / max(float(texture.std()), 1e-6)
    array = 20 + 80 * inside + (5 + 5 * inside) * texture + rng.normal(0, 2, (SIZE,) * 3)
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing([SPACING] * 3)
    image.SetOrigin([-(SIZE - 1) / 2 * SPACING] * 3)
    return image


def write_spheres(folder: Path, n_cases: int = 80, seed: int = 0) -> Path:
    """``n_cases`` sphere images with random conditions and their manifest (value = [radius, shift])."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n_cases):
        radius, shift = float(rng.uniform(*RADIUS)), float(rng.uniform(*SHIFT))
        name = f"ball_{i:03d}.nii.gz"
        sitk.WriteImage(sphere_image(radius, shift, seed * 1000 + i), str(folder / name))
        entries.append({"id": f"ball_{i:03d}", "image": name, "value": [round(radius, 3), round(shift, 3)]})
    manifest = folder / "dataset.json"
    manifest.write_text(json.dumps({"name": "spheres", "channel_names": {"0": "image"}, "labels": {},
                                    "training": entries}, indent=1))
    return manifest


def measure_generation(predictor, radii, shifts, seeds, threshold: float) -> dict:
    """Generate every (radius, shift, seed) and measure radius and x-centroid of the largest foreground ball."""
    from deepmed.evaluation import generation_metrics as measures

    rows, images = [], {}
    for radius in radii:
        for shift in shifts:
            for seed in seeds:
                image = predictor.predict([], condition=[radius, shift], seed=seed).output
                shape = measures.shape_properties(image, threshold)
                rows.append({"radius": radius, "shift": shift, "seed": seed, "measured_radius": shape["radius"],
                             "measured_shift": shape["centre_x"]})
                images.setdefault((radius, shift), image)
    return {"rows": rows, "images": images,
            "r_radius": measures.correlation([r["measured_radius"] for r in rows], [r["radius"] for r in rows]),
            "r_shift": measures.correlation([r["measured_shift"] for r in rows], [r["shift"] for r in rows])}


def intensity_comparison(generated: list[np.ndarray], training: list[np.ndarray], threshold: float) -> dict:
    """Mean statistics inside/outside of generated and training images, and their histogram distance."""
    from deepmed.evaluation import generation_metrics as measures

    def mean_statistics(arrays):
        stats = [measures.intensity_statistics(a, threshold) for a in arrays]
        return {k: float(np.nanmean([s[k] for s in stats])) for k in measures.INTENSITY_KEYS}

    half = len(training) // 2
    return {"generated": mean_statistics(generated), "training": mean_statistics(training),
            "histogram_distance": measures.histogram_distance(generated, training),
            "histogram_distance_real": measures.histogram_distance(training[:half], training[half:])}


def sample_grid_png(images: dict, radii, shifts, path: Path) -> Path:
    """Middle axial slices: one row per radius, one column per shift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(radii), len(shifts), figsize=(1.6 * len(shifts), 1.6 * len(radii)))
    for i, radius in enumerate(radii):
        for j, shift in enumerate(shifts):
            array = sitk.GetArrayFromImage(images[(radius, shift)])
            ax = axes[i][j]
            ax.imshow(array[array.shape[0] // 2], cmap="gray", vmin=0, vmax=130)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"r={radius:g} mm", fontsize=8)
            if i == 0:
                ax.set_title(f"shift {shift:g} mm", fontsize=8)
    fig.suptitle("generated: rows radius, columns shift (middle slice)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_demo(out: Path, epochs: int | None = None, progress="tqdm", log=print) -> dict:
    """Data -> training -> generation on a grid of conditions -> measures; returns the summary."""
    from deepmed.inference.predictor import Predictor
    from deepmed.training.driver import train

    out = demo_folder(out)
    started = time.time()
    log("[1/4] generating 80 sphere images"
        f" (conditions: radius {RADIUS} mm, shift {SHIFT} mm) in {out / 'data'}")
    manifest = write_spheres(out / "data")
    log("[2/4] training the conditional GAN on the CPU")
    model_dir = train(manifest, out / "model", config=DEMO_CONFIG, epochs=epochs, progress=progress)
    train_seconds = time.time() - started
    log("[3/4] generating a 5 x 5 grid of conditions, 3 seeds each, and measuring the balls")
    predictor = Predictor(model_dir, device="cpu")
    threshold = predictor.card.settings["threshold"]
    ranges = [(c.min, c.max) for c in predictor.card.conditions]  # requested within the training range
    radii, shifts = (np.linspace(*r, 5).round(2).tolist() for r in ranges)
    measured = measure_generation(predictor, radii, shifts, [0, 1, 2], threshold)
    sample_grid_png(measured["images"], radii, shifts, out / "samples.png")
    log("[4/4] intensity statistics against the training images")
    training = [sitk.GetArrayFromImage(sitk.ReadImage(str(manifest.parent / f"ball_{i:03d}.nii.gz")))
                for i in range(12)]
    generated = [sitk.GetArrayFromImage(image) for image in measured["images"].values()]
    intensity = intensity_comparison(generated, training, threshold)
    window = predictor.card.settings["intensity"][0]
    tolerance = MEAN_TOLERANCE * (window["high"] - window["low"])
    means_close = all(abs(intensity["generated"][k] - intensity["training"][k]) <= tolerance
                      for k in ("mean_inside", "mean_outside"))
    seconds = time.time() - started
    summary = {"r_radius": measured["r_radius"], "r_shift": measured["r_shift"], "intensity": intensity,
               "means_close": means_close,
               "seconds": round(seconds, 1), "train_seconds": round(train_seconds, 1), "model_dir": str(model_dir),
               "threshold": threshold}
    (out / "summary.json").write_text(json.dumps({**summary, "rows": measured["rows"]}, indent=1))
    log(f"condition correlation (measured in generated images vs requested, {len(measured['rows'])} volumes):")
    log(f"  radius: r = {measured['r_radius']:.3f}   shift: r = {measured['r_shift']:.3f}   "
        f"(required >= {REQUIRED_R})")
    log("intensity          generated  training")
    for key in ("mean_inside", "std_inside", "mean_outside", "std_outside"):
        log(f"  {key:16s} {intensity['generated'][key]:9.1f} {intensity['training'][key]:9.1f}")
    log(f"  means within {tolerance:.1f} (10% of the training range {window['low']:.0f}..{window['high']:.0f}): "
        f"{'yes' if means_close else 'NO'}")
    log(f"  histogram distance (Wasserstein-1) generated vs training {intensity['histogram_distance']:.2f}; "
        f"between two halves of the training images {intensity['histogram_distance_real']:.2f}")
    log(f"samples {out / 'samples.png'}; {seconds:.0f} s in all ({train_seconds:.0f} s data + training)")
    return summary


def main(out: Path, epochs: int | None, progress: str) -> int:
    summary = run_demo(out, epochs=epochs, progress=progress, log=lambda m: print(m, flush=True))
    passed = min(summary["r_radius"], summary["r_shift"]) >= REQUIRED_R and summary["means_close"]
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo_cgan"), None, "tqdm"))
