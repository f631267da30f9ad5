"""Accuracy per minute: held-out Dice of the engine's DEFAULT training vs. a plain MONAI tutorial-style
script, each given the same whole-process wall time W, on a CT-like cohort (organ, small low-contrast
lesion, thin vessel; anisotropic spacing) or a two-channel MR-like one (ventricles, edema, small lesion).

    python benchmarks/bench_accuracy_per_minute.py [--cohort ct|mr] [--wall 189] [--device cpu|cuda]
        [--out result.json]

Both trainings run as subprocesses (their imports and data loading count in W); both models then segment
the held-out cases (not timed) and are scored with the same code (deepmed.evaluation).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

USER_ENV = dict(os.environ)  # before deepmed is imported (it sets OMP_WAIT_POLICY): the plain script's own

from deepmed.evaluation.evaluate import evaluate  # noqa: E402
from deepmed.phantoms.ct_cohort import CT_LABELS, write_ct_cohort  # noqa: E402  (after USER_ENV)
from deepmed.phantoms.mr_cohort import MR_LABELS, write_mr_cohort  # noqa: E402

HERE = Path(__file__).resolve().parent
COHORTS = {"ct": (write_ct_cohort, CT_LABELS), "mr": (write_mr_cohort, MR_LABELS)}


def run_timed(command: list[str], log: Path, env: dict | None = None) -> float:
    started = time.time()
    with open(log, "w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{log.read_text()[-3000:]}")
    return time.time() - started


def classes(manifest: Path) -> list[str]:
    return [name for name, value in json.loads(manifest.read_text())["labels"].items() if value]


def score(manifest: Path, predictions: Path) -> dict:
    rows = evaluate(manifest, predictions, distances=False)
    dice = {name: float(np.mean([r["dice"] for r in rows if r["name"] == name])) for name in classes(manifest)}
    cases = len({r["case"] for r in rows})
    return {"dice": dice, "mean_dice": float(np.mean(list(dice.values()))), "cases": cases}


def plain(manifest: Path, work: Path, wall: float, device: str, env: dict) -> dict:
    script, model = str(HERE / "plain_monai_segmentation.py"), work / "plain.pt"
    seconds = run_timed([sys.executable, script, "train", str(manifest), str(model), "--wall", str(wall),
                         "--device", device], work / "plain_train.log", env)
    summary = json.loads((work / "plain_train.log").read_text().strip().splitlines()[-1])
    run_timed([sys.executable, script, "infer", str(manifest), str(model), str(work / "plain_pred"),
               "--device", device], work / "plain_infer.log", env)
    return {"wall_s": round(seconds, 1), "iterations": summary["iterations"], "epochs": summary["epochs"],
            **score(manifest, work / "plain_pred")}


def engine(manifest: Path, work: Path, wall: float, device: str, env: dict, settings: list[str]) -> dict:
    deepmed, model = [sys.executable, "-m", "deepmed"], work / "engine_model"
    train = ["train", "--dataset", str(manifest), "--out", str(model), "--time-limit", str(wall),
             "--device", device, "--progress", "jsonl"]  # the defaults: no other setting (unless --engine-set)
    for assignment in settings:
        train += ["--set", assignment]
    seconds = run_timed(deepmed + train, work / "engine_train.log", env)
    events = [json.loads(line) for line in (work / "engine_train.log").read_text().splitlines()
              if line.startswith("{")]
    plan = json.loads((model / "plan.json").read_text())
    infer = ["infer", "--model", str(model), str(manifest), "-o", str(work / "engine_pred"),  # the test cases
             "--device", device, "--progress", "none"]
    run_timed(deepmed + infer, work / "engine_infer.log", env)
    return {"wall_s": round(seconds, 1), "iterations": sum(e["event"] == "iteration" for e in events),
            "epochs": sum(e["event"] == "epoch" for e in events),
            "validations": sum(e["event"] == "validation" for e in events),
            "plan": {**{k: plan[k] for k in ("spacing", "patch_size", "sampling")},
                     "batch": plan["schedule"]["batch_size"]},
            **score(manifest, work / "engine_pred")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", choices=sorted(COHORTS), default="ct",
                        help="ct: organ, low-contrast lesion, thin vessel (anisotropic HU); mr: two channels, "
                        "ventricles, edema, small enhancing lesion")
    parser.add_argument("--wall", type=float, default=189.0, help="whole-process wall time of a training (s)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--train-cases", type=int, default=24)
    parser.add_argument("--test-cases", type=int, default=8)
    parser.add_argument("--only", choices=["engine", "plain"], help="run one side only (for iterating)")
    parser.add_argument("--plain-passive-threads", action="store_true",
                        help="control: run the plain script with OMP_WAIT_POLICY=PASSIVE, as the engine sets it")
    parser.add_argument("--engine-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an engine setting other than its default (for experiments; the report says so)")
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.time()
        manifest = COHORTS[args.cohort][0](work / "data", args.train_cases, seed=0, n_test=args.test_cases)
        print(f"{args.cohort} cohort: {args.train_cases} training + {args.test_cases} held-out cases "
              f"({time.time() - started:.1f} s); W = {args.wall:.0f} s on {args.device}", flush=True)
        results = {"cohort": args.cohort, "wall": args.wall, "device": args.device,
                   "load_average_at_start": os.getloadavg()[0],
                   "plain_passive_threads": args.plain_passive_threads, "engine_settings": args.engine_set}
        plain_env = {**USER_ENV, "OMP_WAIT_POLICY": "PASSIVE"} if args.plain_passive_threads else USER_ENV
        for name, bench, env in (("plain", plain, plain_env), ("engine", engine, None)):
            if args.only in (None, name):
                extra = (args.engine_set,) if name == "engine" else ()
                results[name] = bench(manifest, work, args.wall, args.device, env, *extra)
                print(name, json.dumps(results[name]), flush=True)
    report(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


def report(results: dict) -> None:
    sides = [s for s in ("engine", "plain") if s in results]
    print(f"\naccuracy per minute, {results['cohort']} cohort, W = {results['wall']:.0f} s, {results['device']} "
          "(held-out Dice), "
          f"load average at start {results['load_average_at_start']:.2f}"
          + (", plain with passive OpenMP threads" if results["plain_passive_threads"] else ""))
    print(f"{'':14}" + "".join(f"{s:>10}" for s in sides) + ("   ratio" if len(sides) == 2 else ""))
    names = [name for name, value in COHORTS[results["cohort"]][1].items() if value]
    rows = [(name, lambda r, n=name: r["dice"][n]) for name in names]
    rows.append(("mean Dice", lambda r: r["mean_dice"]))
    for label, get in rows:
        values = [get(results[s]) for s in sides]
        ratio = f"{values[0] / values[1]:8.2f}" if len(sides) == 2 and values[1] > 0 else ""
        print(f"{label:14}" + "".join(f"{v:10.3f}" for v in values) + ratio)
    for key in ("iterations", "wall_s"):
        print(f"{key:14}" + "".join(f"{results[s][key]:10}" for s in sides))
    if "engine" in results:
        print("engine plan:", json.dumps(results["engine"]["plan"]))


if __name__ == "__main__":
    main()
