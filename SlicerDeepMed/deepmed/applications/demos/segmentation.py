"""``deepmed demo``: synthetic cohort -> train -> segment held-out cases -> evaluate -> pictures."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.applications.demos import demo_folder, shared_scan
from deepmed.applications.segmentation import SegmentationApplication
from deepmed.data.manifest import Dataset
from deepmed.data.split import add_splits
from deepmed.phantoms.synthetic import write_cohort

DEMO_CONFIG = {
    "app": SegmentationApplication.name,
    "network": {"name": "unet", "args": {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1}},
    "loss": {"name": "dice_ce"},
    "data": {"patch_size": [48, 48, 32], "samples_per_case": 2},
    "training": {"epochs": 30, "iterations_per_epoch": 8, "val_every": 5, "seed": 0,
                 "device": "cpu"},
    "inference": {"keep_largest": True},
}


def overlay_png(image: sitk.Image, reference: sitk.Image, prediction: sitk.Image, path: Path, title: str) -> Path:
    """The middle slice (through the organ) with reference (dashed) and predicted (solid) contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepmed.transforms.preprocessing import oriented

    img, ref, pred = (sitk.GetArrayFromImage(oriented(x)) for x in (image, reference, prediction))
    spacing = oriented(image).GetSpacing()
    z = int(np.argmax((ref > 0).sum(axis=(1, 2))))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(img[z], cmap="gray", aspect=spacing[1] / spacing[0])
    colours = {1: "tab:green", 2: "tab:orange"}
    for value, colour in colours.items():
        if (ref[z] == value).any():
            ax.contour(ref[z] == value, levels=[0.5], colors=colour, linestyles="dashed", linewidths=1)
        if (pred[z] == value).any():
            ax.contour(pred[z] == value, levels=[0.5], colors=colour, linewidths=1.5)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_demo(out: Path, *, n_cases: int = 20, epochs: int | None = None, progress="tqdm", log=print) -> dict:
    """Run the whole demo into ``out``; returns a summary dict (held-out mean Dice, paths, seconds)."""
    from deepmed.evaluation.evaluate import evaluate, format_summary, write_csv
    from deepmed.inference.predictor import Predictor
    from deepmed.io.image_io import write_image
    from deepmed.training.driver import train

    out = demo_folder(out)
    start = time.time()
    log(f"[1/5] generating {n_cases} synthetic cases in {out / 'data'}")
    manifest = write_cohort(out / "data", n_cases=n_cases)
    dataset = Dataset.load(manifest)
    add_splits(dataset, fractions=(0.65, 0.15, 0.20), seed=0)
    dataset.save(manifest)
    train_ids, val_ids, test_ids = (dataset.splits[0][k] for k in ("train", "val", "test"))
    log(f"      split: {len(train_ids)} train, {len(val_ids)} validation, {len(test_ids)} held-out test")

    log("[2/5] training a 3D U-Net on the CPU")
    model_dir = train(dataset, out / "model", config=DEMO_CONFIG, epochs=epochs, progress=progress)
    train_seconds = time.time() - start

    log("[3/5] segmenting the held-out cases")
    predictor = Predictor(model_dir, device="cpu")
    predictions = out / "predictions"
    predictions.mkdir(exist_ok=True)
    for case_id in test_ids:
        case = dataset.case(case_id)
        result = predictor.predict(case.images)
        write_image(result.output, predictions / f"{case_id}.nii.gz", reference=sitk.ReadImage(str(case.images[0])),
                    label=True)

    log("[4/5] evaluating against the reference labels")
    references = out / "references"
    references.mkdir(exist_ok=True)
    for case_id in test_ids:
        shutil.copy(dataset.case(case_id).label, references / f"{case_id}.nii.gz")
    rows = evaluate(references, predictions, labels={1: "organ", 2: "lesion"})
    write_csv(rows, out / "metrics.csv")
    log(format_summary(rows))
    mean_dice = float(np.mean([r["dice"] for r in rows]))
    shutil.copy(model_dir / "curves.png", out / "curves.png")
    first = dataset.case(test_ids[0])
    overlay_png(sitk.ReadImage(str(first.images[0])), sitk.ReadImage(str(first.label)),
                sitk.ReadImage(str(predictions / f"{test_ids[0]}.nii.gz")), out / "overlay.png",
                f"{test_ids[0]}: reference dashed, prediction solid")

    log("[5/5] running the model on a real scan")
    real = shared_scan()
    real_output = None
    if real is None:
        log("      no real scan found (../shared/data); skipped")
    else:
        scan = sitk.ReadImage(str(real))
        result = predictor.predict(scan)
        real_output = write_image(result.output, out / "real_scan_segmentation.nii.gz", reference=scan, label=True)
        log(f"      {real.name}: {scan.GetSize()} at {tuple(round(s, 3) for s in scan.GetSpacing())} mm -> "
            f"{real_output} (same grid as the input)")
    seconds = time.time() - start
    log(f"held-out mean Dice {mean_dice:.3f} over {len(test_ids)} cases x 2 labels; "
        f"metrics in {out / 'metrics.csv'}; curves {out / 'curves.png'}; overlay {out / 'overlay.png'}; "
        f"{seconds:.0f} s in all ({train_seconds:.0f} s data + training)")
    return {"mean_dice": mean_dice, "rows": rows, "model_dir": model_dir, "seconds": seconds,
            "real_output": real_output}


def main_demo(out: Path, epochs: int | None, progress: str) -> int:
    summary = run_demo(out, epochs=epochs, progress=progress, log=lambda m: print(m, flush=True))
    return 0 if summary["mean_dice"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main_demo(Path(sys.argv[1] if len(sys.argv) > 1 else "demo_output"), None, "tqdm"))
