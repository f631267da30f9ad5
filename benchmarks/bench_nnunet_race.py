"""nnU-Net's own predictor against ``deepmed infer`` on the same nnU-Net model, in separate processes.

The model is made by nnunetv2 itself (``nnunet_race_model.make_nnunet_result_folder``: its planner on the
shared example CT at 1.5 mm, default 3d_fullres network, random weights) and imported with
``deepmed zoo import``. Both tools segment the same 512 x 512 x N CT (the shared example CT resampled, as in
bench_large_ct.py) with one fold, 2 threads each, with and without mirroring. Each run is one process
launched from here: wall time from launch to exit, and the peak resident memory of its whole process tree
(``/proc`` sampled every 50 ms, children included). Labels are compared voxel for voxel (and the grids).

    python benchmarks/bench_nnunet_race.py [--slices 300] [--mirroring both|on|off] [--device cpu|cuda]
        [--only deepmed|nnunet] [--out results.json] [--work DIR] [--profile]

``--work DIR`` keeps the model, CT and outputs between invocations (one measurement per lock hold);
``--profile`` runs deepmed under cProfile (by own time, into OUTPUT.profile.txt; its time is not comparable).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_large_ct import make_large_ct  # noqa: E402
from nnunet_race_model import make_nnunet_result_folder  # noqa: E402

REPO = HERE.parent
THREADS = 2

NNUNET = """
import sys, torch
threads, result, image, out, mirror, device = sys.argv[1:7]
torch.set_num_threads(int(threads))
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror == "1",
                            perform_everything_on_device=device == "cuda", device=torch.device(device),
                            allow_tqdm=False)
predictor.initialize_from_trained_model_folder(result, use_folds=(0,), checkpoint_name="checkpoint_final.pth")
predictor.predict_from_files_sequential([[image]], [out[:-len(".nii.gz")]], save_probabilities=False,
                                        overwrite=True)
"""

DEEPMED = """
import sys, torch
threads, profile, model, image, out, mirror, device = sys.argv[1:8]
torch.set_num_threads(int(threads))
from deepmed.cli.main import main
args = ["infer", "--model", model, image, "-o", out, "--device", device, "--folds", "0", "--progress", "none",
        "--force", "--tta" if mirror == "1" else "--no-tta"]
if profile == "1":
    import cProfile, pstats
    profiler = cProfile.Profile()
    code = profiler.runcall(main, args)
    with open(out + ".profile.txt", "w") as stream:
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(30)
    sys.exit(code)
sys.exit(main(args))
"""


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (VmRSS from /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
        stack += _children(current)
    return total


def measure(command: list[str], env: dict) -> dict:
    """Run ``command``; its wall time and the peak RSS of its process tree, or the error's last line."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    if process.returncode != 0:
        return {"error": (stderr.strip().splitlines() or [f"exit {process.returncode}"])[-1]}
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(peak[0] / 2**30, 2)}


def agreement(ours: Path, theirs: Path) -> dict:
    """Fraction of voxels with the same label, and whether the grids are identical."""
    a, b = sitk.ReadImage(str(ours)), sitk.ReadImage(str(theirs))
    same_grid = all(getattr(a, f)() == getattr(b, f)() for f in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"))
    x, y = sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b)
    differing = int(np.count_nonzero(x != y)) if x.shape == y.shape else -1
    return {"same_grid": same_grid, "voxels": int(x.size), "differing_voxels": differing,
            "agreement": 1.0 - differing / x.size if differing >= 0 else 0.0,
            "labels_found": len(np.unique(x))}


def prepare(work: Path, slices: int, classes: int) -> tuple[Path, Path, Path]:
    """The nnU-Net result folder, deepmed's import of it and the CT (made once under ``work``)."""
    result = make_nnunet_result_folder(work / "nnunet", classes=classes)
    model = work / "library" / "race"
    if not (model / "model_card.json").is_file():
        done = subprocess.run([sys.executable, "-m", "deepmed", "zoo", "--library", str(work / "library"), "import",
                               str(result), "--id", "race"], capture_output=True, text=True, env=_env(work))
        if done.returncode != 0:
            raise SystemExit(f"deepmed zoo import failed: {done.stderr.strip()[-300:]}")
    image = work / f"ct_512x512x{slices}.nii.gz"
    if not image.is_file():
        make_large_ct(image, slices)
    return result, model, image


def _env(work: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS),
           "PYTHONPATH": os.pathsep.join([str(REPO / "SlicerDeepMed"), os.environ.get("PYTHONPATH", "")])}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = str(work / "nnunet" / name)
    return env


def race(work: Path, slices: int, classes: int, mirroring: list[bool], device: str, only: str | None,
         profile: bool) -> dict:
    result, model, image = prepare(work, slices, classes)
    weights = model / "model.safetensors"
    rows = {"input": f"512x512x{slices} CT", "classes": classes, "device": device, "threads": THREADS,
            "checkpoint_mb": round((result / "fold_0" / "checkpoint_final.pth").stat().st_size / 1e6, 1),
            "safetensors_mb": round(weights.stat().st_size / 1e6, 1), "runs": []}
    env = _env(work)
    for mirror in mirroring:
        row = {"mirroring": mirror}
        outputs = {tool: work / f"{tool}_{slices}_{'mirror' if mirror else 'nomirror'}.nii.gz"
                   for tool in ("deepmed", "nnunet")}
        flag = "1" if mirror else "0"
        if only in (None, "nnunet"):
            outputs["nnunet"].unlink(missing_ok=True)
            row["nnunet"] = measure([sys.executable, "-c", NNUNET, str(THREADS), str(result), str(image),
                                     str(outputs["nnunet"]), flag, device], env)
        if only in (None, "deepmed"):
            row["deepmed"] = measure([sys.executable, "-c", DEEPMED, str(THREADS), "1" if profile else "0",
                                      str(model), str(image), str(outputs["deepmed"]), flag, device], env)
        if all(path.is_file() for path in outputs.values()):
            row["labels"] = agreement(outputs["deepmed"], outputs["nnunet"])
        rows["runs"].append(row)
    return rows


def table(results: dict) -> str:
    """The markdown table of :func:`race`'s results."""
    lines = ["| mirroring | tool | s/volume | peak RSS (GiB, tree) | labels vs nnU-Net |",
             "|---|---|---:|---:|---|"]
    for row in results["runs"]:
        labels = row.get("labels")
        same = (f"{labels['agreement'] * 100:.4f}% ({labels['differing_voxels']} of {labels['voxels']} differ)"
                if labels else "")
        for tool in ("nnunet", "deepmed"):
            if tool not in row:
                continue
            measured = row[tool]
            name = "nnUNetPredictor" if tool == "nnunet" else "deepmed infer"
            if "error" in measured:
                lines.append(f"| {'on' if row['mirroring'] else 'off'} | {name} | failed: {measured['error']} | | |")
                continue
            lines.append(f"| {'on' if row['mirroring'] else 'off'} | {name} | {measured['seconds']} | "
                         f"{measured['peak_rss_gib']} | {same if tool == 'deepmed' else 'reference'} |")
        if "nnunet" in row and "deepmed" in row and "seconds" in row["nnunet"] and "seconds" in row["deepmed"]:
            lines.append(f"| {'on' if row['mirroring'] else 'off'} | ratio deepmed / nnU-Net | "
                         f"{row['deepmed']['seconds'] / row['nnunet']['seconds']:.2f} | "
                         f"{row['deepmed']['peak_rss_gib'] / row['nnunet']['peak_rss_gib']:.2f} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--classes", type=int, default=7, help="labels of the nnU-Net dataset, background included")
    parser.add_argument("--mirroring", choices=("both", "on", "off"), default="both")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--only", choices=("deepmed", "nnunet"), help="run one tool (outputs kept in --work)")
    parser.add_argument("--profile", action="store_true", help="print deepmed's cProfile (by own time)")
    parser.add_argument("--work", type=Path, help="keep the model, CT and outputs here between invocations")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("bench_nnunet_race: --device cuda but no CUDA device is available (torch sees none)")
    mirroring = {"both": [False, True], "on": [True], "off": [False]}[args.mirroring]
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        results = race(work, args.slices, args.classes, mirroring, args.device, args.only, args.profile)
    print(f"{results['input']}, {results['classes']} classes, {args.device}, {THREADS} threads; checkpoint "
          f"{results['checkpoint_mb']} MB, model.safetensors {results['safetensors_mb']} MB")
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
