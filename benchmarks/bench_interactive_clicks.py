"""Number-of-clicks curves of the interactive model against the automatic segmentation model of the same network,
trained on the same cases for the same wall time W, scored on held-out cases.

    python benchmarks/bench_interactive_clicks.py --data ct|demo|totalseg [--wall 180] [--max-clicks 10]
        [--variants scratch,init]
        [--keep DIR] [--out result.json] [--plot docs/images/interactive_clicks_ct.png] [--lock /tmp/x.lock]

Data: ``ct``: the CT-like cohort (organ, low-contrast lesion, thin vessel; deepmed.phantoms.ct_cohort), held-out
cases from other seeds; ``demo``: ``deepmed demo``'s synthetic MR-like cohort (organ, lesion), the last cases
held out; ``totalseg``: the TotalSegmentator example CT (../shared/data/totalsegmentator), a few structures,
trained on the upper half along z and scored on the lower half. Both trainings run as ``deepmed train``
subprocesses with ``--time-limit W`` (the engine's defaults, only ``--app`` differs); the ``init`` variant's
interactive model spends the same W as an automatic model trained for W/2 and fine-tuned from it for W/2;
``--lock`` holds a file lock for the whole run (the trainings and the scoring), so a shared machine runs one
heavy job at a time.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from heavy_lock import held  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "data"
TOTALSEG_STRUCTURES = {"spleen": 1, "liver": 5, "stomach": 6, "aorta": 52}  # name -> example_seg value (all z)
VARIANTS = {"scratch": "trained from scratch for W",
            "init": "an automatic model trained for W/2, then the interactive model fine-tuned from it (--init) "
                    "for W/2"}
HARD = {"ct": ("lesion", "vessel"), "demo": ("lesion",), "totalseg": ("aorta",)}




# ---- data ------------------------------------------------------------------------------------------------
def make_data(kind: str, folder: Path, train_cases: int, test_cases: int) -> Path:
    if kind == "ct":
        from deepmed.phantoms.ct_cohort import write_ct_cohort

        return write_ct_cohort(folder, train_cases, seed=0, n_test=test_cases)
    if kind == "demo":
        from deepmed.phantoms.synthetic import write_cohort

        manifest = write_cohort(folder, n_cases=train_cases + test_cases)
        data = json.loads(manifest.read_text())
        data["training"], data["test"] = data["training"][:train_cases], data["training"][train_cases:]
        manifest.write_text(json.dumps(data, indent=2) + "\n")
        return manifest
    return totalseg_halves(folder)


def totalseg_halves(folder: Path) -> Path:
    """The example CT cut along z into an upper (training) and a lower (held-out) half, a few structures."""
    image = sitk.ReadImage(str(SHARED / "totalsegmentator" / "example_ct_sm.nii.gz"))
    seg = sitk.ReadImage(str(SHARED / "totalsegmentator" / "example_seg.nii.gz"))
    seg.CopyInformation(image)
    values = sitk.GetArrayFromImage(seg)
    labels = np.zeros(values.shape, np.uint8)
    for new, old in enumerate(TOTALSEG_STRUCTURES.values(), start=1):
        labels[values == old] = new
    label = sitk.GetImageFromArray(labels)
    label.CopyInformation(image)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    half = image.GetSize()[2] // 2
    entries = {}
    for name, start, size in (("upper", half, image.GetSize()[2] - half), ("lower", 0, half)):
        for img, sub in ((image, "images"), (label, "labels")):
            part = sitk.RegionOfInterest(img, [*img.GetSize()[:2], size], [0, 0, start])
            sitk.WriteImage(part, str(folder / sub / f"{name}.nii.gz"))
        entries[name] = {"id": name, "image": [f"images/{name}.nii.gz"], "label": f"labels/{name}.nii.gz"}
    manifest = {"name": "totalseg_halves", "description": "TotalSegmentator example CT, halves along z",
                "channel_names": {"0": "CT"}, "labels": {"background": 0, **{n: i for i, n in
                                                                          enumerate(TOTALSEG_STRUCTURES, 1)}},
                "training": [entries["upper"]], "test": [entries["lower"]]}
    path = folder / "dataset.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


# ---- training ---------------------------------------------------------------------------------------------
def train(manifest: Path, out: Path, app: str, wall: float, log: Path, init: Path | None = None) -> dict:
    command = [sys.executable, "-m", "deepmed", "train", "--dataset", str(manifest), "--out", str(out), "--app", app,
               "--time-limit", str(wall), "--device", "cpu", "--progress", "jsonl",
               *(["--init", str(init)] if init else [])]
    with open(log, "w") as handle:
        started = time.time()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
        seconds = time.time() - started
    if result.returncode != 0:
        sys.exit(f"training {out.name} failed ({result.returncode}):\n{log.read_text()[-3000:]}")
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    plan = json.loads((out / "plan.json").read_text())
    return {"wall_s": round(seconds, 1), "iterations": sum(e.get("event") == "iteration" for e in events),
            "network": plan.get("network"), "patch_size": plan.get("patch_size")}


# ---- scoring ----------------------------------------------------------------------------------------------
def automatic_dice(model: Path, manifest: Path, labels: list[str]) -> dict[str, dict[str, float]]:
    """Per label, the automatic model's Dice on each held-out case that holds the label (case id -> Dice)."""
    from deepmed.data.case_io import read_case
    from deepmed.data.manifest import Dataset
    from deepmed.evaluation.segmentation_metrics import binary_metrics
    from deepmed.inference.predictor import Predictor

    dataset, predictor = Dataset.load(manifest), Predictor(model, device="cpu")
    scores: dict[str, dict[str, float]] = {name: {} for name in labels}
    for case in dataset.test:
        _, truth = read_case(case)
        predicted = sitk.GetArrayFromImage(predictor.predict(case.images).output)
        reference = sitk.GetArrayFromImage(truth)
        for name in labels:
            value = dataset.labels[name]
            if (reference == value).any():
                scores[name][case.id] = float(binary_metrics(reference == value, predicted == value, (1, 1, 1),
                                                             False)["dice"])
    return {name: v for name, v in scores.items() if v}


def cases_better(clicks: dict, automatic: dict[str, dict[str, float]], after: int = 5) -> dict[str, str]:
    """Per label: in how many held-out cases the Dice after ``after`` clicks is above the automatic model's."""
    out = {}
    for label, per_case in automatic.items():
        pairs = [(c["dice"][min(after, len(c["dice"]) - 1)], per_case[c["case"]]) for c in clicks["curves"]
                 if c["label"] == label and c["case"] in per_case]
        out[label] = f"{sum(a > b for a, b in pairs)} of {len(pairs)}"
    return out


def click_curves(model: Path, manifest: Path, labels: list[str], max_clicks: int):
    from deepmed.evaluation.click_protocol import evaluate_click_curves, session_refine
    from deepmed.interactive.session import InteractiveSession

    session = InteractiveSession(model, device="cpu")
    return evaluate_click_curves(manifest, session_refine(session), labels, max_clicks,
                                 log=lambda line: print("  " + line, flush=True))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(result["variants"].items())
    fig, axes = plt.subplots(1, len(variants), figsize=(5.5 * len(variants), 4), squeeze=False)
    for ax, (variant, data) in zip(axes[0], variants):
        for index, row in enumerate(data["clicks"]["summary"]):
            colour = f"C{index}"
            curves = [c["dice"] for c in data["clicks"]["curves"] if c["label"] == row["label"]]
            mean = np.mean(np.array(curves), axis=0)
            ax.plot(range(len(mean)), mean, "-o", ms=3, color=colour, label=f"{row['label']} (interactive)")
            if row["automatic_dice"] is not None:
                ax.axhline(row["automatic_dice"], color=colour, ls="--", lw=1, label=f"{row['label']} (automatic)")
        ax.set_xlabel("simulated clicks")
        ax.set_ylabel("mean Dice, held-out cases")
        ax.set_ylim(0, 1)
        ax.set_title(f"{result['data']}, {result['wall']:.0f} s of training each (CPU)\ninteractive: "
                     f"{'from scratch' if variant == 'scratch' else 'automatic W/2 + fine-tuned W/2'}", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ct", choices=["ct", "demo", "totalseg"])
    parser.add_argument("--wall", type=float, default=180.0, help="time limit of each training (s)")
    parser.add_argument("--train-cases", type=int, default=16)
    parser.add_argument("--test-cases", type=int, default=6)
    parser.add_argument("--max-clicks", type=int, default=10)
    parser.add_argument("--variants", default="scratch",
                        help="interactive models to train: scratch (W from scratch), init (an automatic model for W/2, "
                             "then --init from it for W/2); comma-separated")
    parser.add_argument("--reuse", action="store_true", help="keep the models an earlier run trained in --keep")
    parser.add_argument("--only", choices=["train", "score"], help="one stage (score reuses --keep's models)")
    parser.add_argument("--lock", type=Path, help="hold this file lock around each training and scoring")
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="write the Dice-per-click plot here (PNG)")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if unknown := [v for v in variants if v not in VARIANTS]:
        parser.error(f"--variants: unknown {', '.join(unknown)} (expected some of {', '.join(VARIANTS)})")
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        manifest = work / "data" / "dataset.json"
        if args.only != "score" and not (args.reuse and manifest.is_file()):  # made before the lock is taken
            manifest = make_data(args.data, work / "data", args.train_cases, args.test_cases)
        labels = [n for n, v in json.loads(manifest.read_text())["labels"].items() if v]
        training_path = work / "training.json"
        with held(args.lock):
            if args.only != "score":
                # --reuse: models of an earlier run in --keep (same W) are not trained again
                training = json.loads(training_path.read_text()) if args.reuse and training_path.is_file() else {}
                half = args.wall / 2  # init: the same total time, an automatic model for half, then fine-tuned
                wanted = [("segmentation", "segmentation", args.wall, None)]
                if "scratch" in variants:
                    wanted.append(("interactive", "interactive", args.wall, None))
                if "init" in variants:
                    wanted += [("half_segmentation", "segmentation", half, None),
                               ("interactive_init", "interactive", half, work / "half_segmentation")]
                for name, app, wall, init in wanted:
                    if name not in training:
                        training[name] = train(manifest, work / name, app, wall, work / f"{name}.log", init)
                        training_path.write_text(json.dumps(training, indent=2))
                print("trained:", json.dumps(training), flush=True)
            if args.only == "train":
                return
            training = json.loads(training_path.read_text())
            started = time.time()
            automatic = automatic_dice(work / "segmentation", manifest, labels)
            curves = {}
            for variant in variants:
                folder = work / ("interactive" if variant == "scratch" else "interactive_init")
                print(f"{variant}: {folder.name}", flush=True)
                curves[variant] = click_curves(folder, manifest, labels, args.max_clicks)
                curves[variant].automatic_dice = {name: float(np.mean(list(v.values())))
                                                  for name, v in automatic.items()}
            scoring = time.time() - started
    results = {"data": args.data, "wall": args.wall, "machine": f"{platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} CPU cores, torch threads 2", "training": training, "scoring_s": round(scoring, 1),
               "hard_structures": list(HARD[args.data]), "automatic_per_case": automatic, "variants": {}}
    for variant, result in curves.items():
        print(f"\ninteractive model: {VARIANTS[variant]}\n" + result.format_table())
        seconds = [s for c in result.curves for s in c.seconds[1:]]
        better = cases_better(result.to_json(), automatic)
        print("cases where the Dice after 5 clicks is above the automatic model's: "
              + ", ".join(f"{label} {count}" for label, count in better.items()))
        results["variants"][variant] = {"what": VARIANTS[variant], "clicks": result.to_json(),
                                        "better_after_5_clicks": better,
                                        "refine_s_median": float(np.median(seconds)) if seconds else None}
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
