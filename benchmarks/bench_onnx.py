"""Torch vs onnxruntime on the CPU: the same model (the shipped demo U-Net, trained weights) through the same
pre/post-processing and sliding window, on real scans from ../shared/data; each path in its own process (peak RSS
is its own: VmHWM), the same number of threads. Prints one table: s/volume (best of ``--repeats`` after a
warm-up), peak RSS, and agreement with torch float32 (identical label voxels; max |logit difference| on the
working grid).

    python benchmarks/bench_onnx.py [--threads 2] [--repeats 3] [--out result.json]

Torch runs twice: float32, and the engine's default precision ``auto`` (bf16 autocast on CPUs with native bf16,
such as the machine the docs' table was measured on); the ONNX export is float32.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
DEMO_ZIP = REPO / "Resources" / "Models" / "demo-organ-lesion-1.0.0.zip"
SHARED = REPO.parent / "shared" / "data"
SCANS = {"brain MR 256x256x25": SHARED / "pyradiomics" / "brain1_image.nrrd",
         "body MR 117x91x20": SHARED / "totalsegmentator" / "example_mr_sm.nii.gz"}
WARM_UP = SHARED / "pyradiomics" / "breast1_image.nrrd"

CHILD = """
import json, resource, sys, time
import torch
model, image, warm_up, out, precision, threads, repeats = sys.argv[1:8]
torch.set_num_threads(int(threads))
from deepmed.inference.predictor import Predictor
from deepmed.io.image_io import write_image
options = {} if precision == "onnx" else {"precision": precision}
predictor = Predictor(model, "cpu")
predictor.predict([warm_up], **options)
times = []
for _ in range(int(repeats)):
    start = time.perf_counter()
    result = predictor.predict([image], **options)
    times.append(time.perf_counter() - start)
write_image(result.output, out, label=True)


def peak_rss_mb():  # this process's own peak: VmHWM (Linux keeps the parent's ru_maxrss across exec)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": min(times), "peak_rss_mb": peak_rss_mb()}))
"""


def run_child(model: Path, image: Path, out: Path, precision: str, threads: int, repeats: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(model), str(image), str(WARM_UP), str(out), precision,
                           str(threads), str(repeats)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{precision} on {image.name} failed: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def labels(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from deepmed.inference.predictor import Predictor
    from deepmed.workflows.onnx_export import export_onnx
    from deepmed.workflows.onnx_parity import working_grid_logits

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(DEMO_ZIP) as archive:
            archive.extractall(root / "model")
        export_onnx(root / "model", root / "export")
        reference, export = Predictor(root / "model", "cpu"), Predictor(root / "export")
        for scan, image in SCANS.items():
            logits = float(np.abs(working_grid_logits(reference, [image]) - working_grid_logits(export, [image])).max())
            outputs = {}
            for path, precision in (("torch float32", "float32"), ("torch auto", "auto"), ("onnxruntime", "onnx")):
                model = root / ("export" if precision == "onnx" else "model")
                outputs[path] = root / f"{precision}_{image.name.split('.')[0]}.nii.gz"
                row = {"scan": scan, "path": path,
                       **run_child(model, image, outputs[path], precision, args.threads, args.repeats)}
                expected, got = labels(outputs["torch float32"]), labels(outputs[path])
                row["identical_labels"] = float(np.mean(expected == got))
                row["foreground_voxels"] = int(np.count_nonzero(expected))
                if precision == "onnx":
                    row["max_abs_logit_difference"] = logits
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n| scan | path ({args.threads} threads) | s / volume | peak RSS, MB | identical labels vs torch float32 |")
    print("|---|---|---|---|---|")
    for row in rows:
        note = f" (max abs logit diff {row['max_abs_logit_difference']:.1e})" if "max_abs_logit_difference" in row \
            else ""
        print(f"| {row['scan']} | {row['path']} | {row['seconds']:.2f} | {row['peak_rss_mb']:,.0f} | "
              f"{100 * row['identical_labels']:.3f}%{note} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
