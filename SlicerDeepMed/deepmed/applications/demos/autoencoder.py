"""``deepmed demo --app autoencoder``: a variational autoencoder against PCA with the same latent size.

The cohort: one bright sphere per image whose centre (3 numbers), radius and brightness vary at random, on a
dim background with Gaussian noise, on grids of different sizes and spacings over the same box. Five numbers
describe each image, but the images are not a linear function of them (moving or growing a sphere is far
from a sum of fixed patterns), so a linear code of 8 components (PCA) reconstructs them poorly while a
nonlinear code of 8 can do better. Both are measured on the same held-out images on the model's grid; noise
is in every image, so neither can go below its variance (printed).

Exit status 0 only if the autoencoder's held-out MSE is below PCA's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.applications.demos import demo_folder

LATENT = 8
INPUT_SIZE = [24, 24, 24]
BOX_MM = 64.0
BACKGROUND, NOISE = 10.0, 5.0
DEMO_CONFIG = {
    "app": "autoencoder",
    "task": {"input_size": INPUT_SIZE, "latent_size": LATENT, "variational": True, "beta": 1e-4,
             "channels": [8, 16, 32]},
    "training": {"epochs": 20, "iterations_per_epoch": 50, "val_every": 5, "seed": 0,
                 "device": "cpu"},
}


def sphere_image(rng: np.random.Generator) -> sitk.Image:
    """One case: a sphere (soft edge) at a random centre, radius and brightness, plus noise."""
    n = int(rng.integers(28, 37))
    spacing = BOX_MM / n
    axis = (np.arange(n) + 0.5) * spacing - BOX_MM / 2  # voxel centres, the box centred on 0
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    centre = rng.uniform(-12, 12, 3)
    radius = rng.uniform(6, 14)
    brightness = rng.uniform(50, 100)
    distance = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    array = BACKGROUND + brightness / (1 + np.exp((distance - radius) / 1.5)) + rng.normal(0, NOISE, distance.shape)
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing([spacing] * 3)
    image.SetOrigin([-BOX_MM / 2 + spacing / 2] * 3)
    return image


def write_cohort(folder: Path, n_train: int = 240, n_val: int = 16, n_test: int = 40,
                 seed: int = 0) -> tuple[Path, dict]:
    """Images and a CSV manifest (images only: an ``id`` and an ``image`` column); returns the manifest and the
    split (``train``, ``val``, ``test`` ids) that holds the last ``n_test`` cases out."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"sphere_{i:03d}" for i in range(n_train + n_val + n_test)]
    for case_id in ids:
        sitk.WriteImage(sphere_image(rng), str(folder / f"{case_id}.nii.gz"))
    path = folder / "spheres.csv"
    path.write_text("id,image\n" + "".join(f"{i},{i}.nii.gz\n" for i in ids))
    return path, {"train": ids[:n_train], "val": ids[n_train:n_train + n_val], "test": ids[n_train + n_val:]}


def middle_slice(array: np.ndarray) -> np.ndarray:
    return array[array.shape[0] // 2]


def pictures(out: Path, originals, models, pcas, frames, title: str) -> tuple[Path, Path]:
    """reconstructions.png (held-out cases: image, autoencoder, PCA) and interpolation.png (one strip)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = min(5, len(originals))
    low, high = BACKGROUND - 2 * NOISE, BACKGROUND + 100
    fig, axes = plt.subplots(3, shown, figsize=(2 * shown, 6.3))
    for column in range(shown):
        for row, (name, arrays) in enumerate((("held-out image", originals), ("autoencoder", models),
                                              (f"PCA ({LATENT})", pcas))):
            axes[row, column].imshow(middle_slice(arrays[column][0]), cmap="gray", vmin=low, vmax=high)
            axes[row, column].axis("off")
            if column == 0:
                axes[row, column].set_title(name, fontsize=8, loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    reconstructions = out / "reconstructions.png"
    fig.savefig(reconstructions, dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(frames), figsize=(1.6 * len(frames), 1.9))
    for index, frame in enumerate(frames):
        axes[index].imshow(middle_slice(sitk.GetArrayFromImage(frame)), cmap="gray", vmin=low, vmax=high)
        axes[index].axis("off")
        axes[index].set_title(f"t={index / (len(frames) - 1):.2f}", fontsize=7)
    fig.tight_layout()
    interpolation = out / "interpolation.png"
    fig.savefig(interpolation, dpi=110)
    plt.close(fig)
    return reconstructions, interpolation


def run_demo(out: Path, epochs: int | None = None, progress="tqdm", log=print) -> dict:
    """The whole demo into ``out``; returns the comparison (``compare_with_pca``) with paths and seconds."""
    from deepmed.applications.autoencoder import model_grid_input, model_grid_reconstruction
    from deepmed.data.manifest import Dataset
    from deepmed.evaluation.reconstruction_metrics import compare_with_pca, fit_pca, pca_reconstruct
    from deepmed.inference.predictor import Predictor
    from deepmed.training.driver import train

    out = demo_folder(out)
    start = time.time()
    manifest, split = write_cohort(out / "data")
    dataset = Dataset.load(manifest)
    dataset.splits = [split]
    log(f"[1/4] {len(dataset.training)} synthetic spheres (centre, radius, brightness at random; noise sd {NOISE}) "
        f"in {out / 'data'}: {len(split['train'])} train, {len(split['val'])} validation, "
        f"{len(split['test'])} held out")
    log(f"[2/4] training a variational autoencoder ({LATENT} latent values, {INPUT_SIZE} voxels) on the CPU")
    model_dir = train(dataset, out / "model", config=DEMO_CONFIG, epochs=epochs, progress=progress)
    trained_s = time.time() - start

    log(f"[3/4] held-out reconstruction: autoencoder vs PCA with {LATENT} components fitted on the training cases")
    predictor = Predictor(model_dir, "cpu")
    card = predictor.card
    images = lambda ids: [dataset.case(i).images for i in ids]  # noqa: E731
    train_arrays = np.stack([model_grid_input(case, card) for case in images(split["train"])])
    test_arrays = np.stack([model_grid_input(case, card) for case in images(split["test"])])
    reconstructions = np.stack([model_grid_reconstruction(predictor.networks, a, card) for a in test_arrays])
    data_range = max(channel.statistics["range"] for channel in card.inputs)
    result = compare_with_pca(train_arrays, test_arrays, reconstructions, LATENT, data_range)
    log(f"      held-out MSE  autoencoder {result['model']['mse']:.2f}   PCA {result['pca']['mse']:.2f}   "
        f"(both include the noise, sd {NOISE:g} in the source images, less after resampling)")
    log(f"      held-out PSNR autoencoder {result['model']['psnr']:.2f} dB   PCA {result['pca']['psnr']:.2f} dB")

    log("[4/4] pictures: reconstructions and an interpolation between two held-out cases")
    first, second = images(split["test"][:2])
    frames = predictor.predict([*first, *second], mode="interpolate", steps=7).frames
    pcas = pca_reconstruct(test_arrays, *fit_pca(train_arrays, LATENT))
    title = (f"held-out MSE: autoencoder {result['model']['mse']:.1f}, PCA {result['pca']['mse']:.1f} "
             f"(latent {LATENT})")
    reconstructions_png, interpolation_png = pictures(out, test_arrays, reconstructions, pcas, frames, title)
    (out / "comparison.json").write_text(json.dumps(result, indent=1))
    seconds = time.time() - start
    verdict = "beats" if result["better"] else "does NOT beat"
    log(f"the autoencoder {verdict} PCA on held-out reconstruction ({result['model']['mse']:.2f} vs "
        f"{result['pca']['mse']:.2f} MSE); {reconstructions_png}, {interpolation_png}, {out / 'comparison.json'}; "
        f"{seconds:.0f} s in all ({trained_s:.0f} s data + training)")
    return {**result, "seconds": seconds, "model_dir": model_dir, "pictures": [reconstructions_png, interpolation_png]}


def run(out: Path, epochs: int | None, progress: str) -> int:
    """``deepmed demo --app autoencoder``: exit 0 only if the autoencoder beats PCA."""
    summary = run_demo(Path(out), epochs, progress, log=lambda message: print(message, flush=True))
    return 0 if summary["better"] else 1


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1] if len(sys.argv) > 1 else "demo_autoencoder"), None, "tqdm"))
