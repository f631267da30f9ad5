"""Per-click latency of Refine mode through the warm worker (``deepmed worker``), as the Slicer panel uses it.

The image is the shared TotalSegmentator example CT resampled to 512 x 512 x N (a clinical-size grid); the
model is the interactive application's own plan for it (its default network, patch and working spacing),
trained for one step (speed does not depend on the weights). One organ of the shared segmentation
is refined with 20 clicks placed one after the other on it (alternately inside: positive, and just outside:
negative), each click a refine of all clicks so far, as in the panel. Measured per click: the round trip
request -> response through the GUI's client (``DeepMedLib.WarmWorker``: JSON line out, the worker refines a
region around the clicks, writes the label map on the input grid, answers), the worker's in-process refine
time, and reading the result back (what the panel does before updating the segment). The first click also
reads and prepares the image (cached for the next clicks) and is reported apart.

    python benchmarks/bench_click_latency.py [--slices 120] [--threads 2] [--clicks 20] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "Testing"), str(REPO / "SlicerDeepMed" / "Modules")]
SHARED = REPO.parent / "shared" / "data" / "totalsegmentator"


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"


def make_case(folder: Path, slices: int) -> tuple[Path, Path, int]:
    """The CT on a 512 x 512 x ``slices`` grid and the shared segmentation on it; the organ refined (the
    largest label)."""
    from bench_large_ct import make_large_ct

    ct = make_large_ct(folder / "ct.nii.gz", slices)
    reference = sitk.ReadImage(str(ct))
    seg = sitk.Resample(sitk.ReadImage(str(SHARED / "example_seg.nii.gz")), reference, sitk.Transform(),
                        sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    values, counts = np.unique(sitk.GetArrayViewFromImage(seg), return_counts=True)
    organ = int(values[1:][np.argmax(counts[1:])])
    label = sitk.Cast(seg == organ, sitk.sitkUInt8)
    label.CopyInformation(reference)
    sitk.WriteImage(label, str(folder / "organ.nii.gz"))
    return ct, folder / "organ.nii.gz", organ


def train_model(folder: Path, ct: Path, label: Path, iterations: int) -> Path:
    """The interactive application's default plan for this CT, trained for ``iterations`` steps."""
    import deepmed

    manifest = {"name": "ct-organ", "channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1},
                "training": [{"id": f"ct{i}", "image": str(ct), "label": str(label)} for i in range(2)]}
    (folder / "dataset.json").write_text(json.dumps(manifest))
    model = folder / "model"
    deepmed.train(folder / "dataset.json", model, epochs=1, device="cpu", progress="none",
                  overrides=["app=interactive", f"training.iterations_per_epoch={iterations}",
                             "training.val_fraction=0"])  # no validation: only the plan and weights matter
    return model


def click_points(label: Path, count: int, seed: int = 0) -> list[tuple[tuple[float, float, float], bool]]:
    """``count`` clicks in physical LPS: inside the organ (positive) and on its rim outside (negative),
    alternately, all within 40 mm of the organ's centre (the region around them stays one region)."""
    image = sitk.ReadImage(str(label))
    mask = sitk.GetArrayFromImage(image) > 0
    rng = np.random.default_rng(seed)
    dilated = sitk.GetArrayFromImage(sitk.BinaryDilate(image, [4, 4, 2])) > 0
    centre = np.argwhere(mask).mean(axis=0)
    spacing_zyx = np.array(image.GetSpacing()[::-1])
    pools = []
    for pool in (np.argwhere(mask), np.argwhere(dilated & ~mask)):
        near = pool[np.linalg.norm((pool - centre) * spacing_zyx, axis=1) < 40.0]
        pools.append(near if len(near) else pool)
    clicks = []
    for index in range(count):
        positive = index % 2 == 0
        kji = pools[0 if positive else 1][rng.integers(len(pools[0 if positive else 1]))]
        clicks.append((image.TransformIndexToPhysicalPoint([int(v) for v in kji[::-1]]), positive))
    return clicks


def measure(model: Path, ct: Path, clicks, threads: int, work: Path) -> dict:
    from slicer_support import i18n

    i18n.install()  # DeepMedLib's messages use slicer.i18n, which slicer-core lacks
    from deepmed.interactive.clicks import Click, ClickSet
    from DeepMedLib.WarmWorker import WarmWorker

    environment = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    from DeepMedLib.EngineCommand import engineEnvironment

    worker = WarmWorker(environment=lambda extra: engineEnvironment({**environment, **(extra or {})}))
    responses: list[dict] = []

    def ask(fields):
        before = len(responses)
        started = time.perf_counter()
        worker.request(fields, responses.append)
        while len(responses) == before:
            worker.poll()
            time.sleep(0.002)
        return responses[-1], time.perf_counter() - started

    started = time.perf_counter()
    opened, open_seconds = ask({"op": "open", "model": str(model), "device": "cpu"})
    assert opened["ok"], opened
    rows = []
    for count in range(1, len(clicks) + 1):
        clickSet = ClickSet(tuple(Click(p, positive, "organ") for p, positive in clicks[:count]), "LPS")
        output = work / f"result-{count}.nrrd"
        response, round_trip = ask({"op": "refine", "image": str(ct), "clicks": clickSet.to_dict(), "previous": None,
                                    "label": "organ", "output": str(output)})
        assert response["ok"], response
        read_started = time.perf_counter()
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(output))) > 0
        read_seconds = time.perf_counter() - read_started
        output.unlink()
        rows.append({"clicks": count, "round_trip_s": round(round_trip, 4), "refine_s": response["seconds"],
                     "worker_cpu_s": response["cpu_seconds"], "read_result_s": round(read_seconds, 4),
                     "region": response["region"], "voxels": int(mask.sum())})
        print(f"click {count:2d}: round trip {round_trip:.3f} s, refine {response['seconds']:.3f} s "
              f"(CPU {response['cpu_seconds']:.2f} s), read {read_seconds:.3f} s, region {response['region']}",
              flush=True)
    pid, starts = worker.pid, worker.starts
    worker.stop()
    return {"open_s": round(open_seconds, 3), "clicks": rows, "worker_pid": pid, "worker_starts": starts,
            "total_s": round(time.perf_counter() - started, 2)}


def summary(rows: list[dict]) -> dict:
    later = rows[1:]  # the first click also prepares the image
    def stats(key):
        values = np.array([row[key] for row in later])
        return {"median": round(float(np.median(values)), 3), "p90": round(float(np.percentile(values, 90)), 3)}
    return {"first_click_round_trip_s": rows[0]["round_trip_s"], "round_trip_s": stats("round_trip_s"),
            "refine_s": stats("refine_s"), "worker_cpu_s": stats("worker_cpu_s"),
            "read_result_s": stats("read_result_s")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=120)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=1, help="training steps of the model (weights barely matter)")
    parser.add_argument("--work", type=Path, help="keep the case and model here (default: a temporary folder)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-click-"))
    work.mkdir(parents=True, exist_ok=True)
    ct, label, organ = (work / "ct.nii.gz", work / "organ.nii.gz", None)
    if not ct.exists() or not label.exists():
        ct, label, organ = make_case(work, args.slices)
    model = work / "model"
    if not (model / "model_card.json").exists():
        started = time.perf_counter()
        model = train_model(work, ct, label, args.iterations)
        print(f"trained in {time.perf_counter() - started:.0f} s", flush=True)
    card = json.loads((model / "model_card.json").read_text())
    image = sitk.ReadImage(str(ct))
    result = measure(model, ct, click_points(label, args.clicks), args.threads, work)
    report = {"machine": machine(), "threads": args.threads, "image_size": list(image.GetSize()),
              "image_spacing": [round(s, 3) for s in image.GetSpacing()], "organ_label": organ,
              "network": card["network"], "patch_size": card["patch_size"], "working_spacing": card["spacing"],
              "region": (card.get("task") or {}).get("guidance", {}).get("region_size"),
              **summary(result["clicks"]), **result}
    print(json.dumps({k: v for k, v in report.items() if k != "clicks"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
