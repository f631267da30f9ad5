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
sys.path.insert(0, str(HERE))
from heavy_lock import held  # noqa: E402

FOUND_DICE = 0.1  # a class is found in a held-out case when its Dice there is above this
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
    names = classes(manifest)
    dice = {name: float(np.mean([r["dice"] for r in rows if r["name"] == name])) for name in names}
    found = {name: sum(r["dice"] > FOUND_DICE for r in rows if r["name"] == name) for name in names}
    cases = len({r["case"] for r in rows})
    return {"dice": dice, "mean_dice": float(np.mean(list(dice.values()))), "cases": cases, "found": found}


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
    parser.add_argument("--table", type=Path, nargs="+", metavar="RESULT_JSON",
                        help="print the runs of these result files (one cohort) as a Markdown table; no training")
    parser.add_argument("--runs", type=int, default=1, help="pairs of trainings (each side once per run)")
    parser.add_argument("--lock", type=Path, help="hold this file locked (flock) during each run, so that other "
                        "heavy jobs on a shared machine wait between runs rather than during them")
    args = parser.parse_args()
    if args.table:
        print(markdown_table([json.loads(path.read_text()) for path in args.table]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.time()
        manifest = COHORTS[args.cohort][0](work / "data", args.train_cases, seed=0, n_test=args.test_cases)
        print(f"{args.cohort} cohort: {args.train_cases} training + {args.test_cases} held-out cases "
              f"({time.time() - started:.1f} s); W = {args.wall:.0f} s on {args.device}", flush=True)
        results = {"cohort": args.cohort, "wall": args.wall, "device": args.device, "cpus": os.cpu_count(),
                   "plain_passive_threads": args.plain_passive_threads, "engine_settings": args.engine_set,
                   "runs": []}
        for index in range(args.runs):
            with held(args.lock):
                results["runs"].append(one_run(args, manifest, work / f"run{index + 1}"))
            report(results)
            if args.out:
                args.out.write_text(json.dumps(results, indent=2) + "\n")




def one_run(args, manifest: Path, work: Path) -> dict:
    """The plain script then the engine, each for the whole wall time, then both scored."""
    work.mkdir(parents=True, exist_ok=True)
    run = {"load_average_at_start": round(os.getloadavg()[0], 2), "started": time.strftime("%H:%M:%S")}
    plain_env = {**USER_ENV, "OMP_WAIT_POLICY": "PASSIVE"} if args.plain_passive_threads else USER_ENV
    for name in ("plain", "engine"):
        if args.only in (None, name):
            if name == "plain":
                run[name] = plain(manifest, work, args.wall, args.device, plain_env)
            else:
                run[name] = engine(manifest, work, args.wall, args.device, None, args.engine_set)
            print(name, json.dumps(run[name]), flush=True)
    run["load_average_at_end"] = round(os.getloadavg()[0], 2)
    return run


def report(results: dict) -> None:
    """Each run's Dice per class and side, then the spread over the runs (min-max) and the ratios."""
    runs, names = results["runs"], [n for n, v in COHORTS[results["cohort"]][1].items() if v] + ["mean"]
    sides = [s for s in ("engine", "plain") if s in runs[0]]
    dice = lambda run, side, name: run[side]["mean_dice"] if name == "mean" else run[side]["dice"][name]  # noqa
    print(f"\naccuracy per minute, {results['cohort']} cohort, W = {results['wall']:.0f} s, {results['device']} "
          f"({results['cpus']} CPUs), held-out Dice" + (f"; engine with {results['engine_settings']}"
                                                        if results["engine_settings"] else ""))
    print(f"{'run':>4} {'side':8}" + "".join(f"{n:>11}" for n in names) + f"{'found':>8}{'iter.':>7}{'wall s':>8}"
          f"{'load':>11}")
    for index, run in enumerate(runs, 1):
        for side in sides:
            found = min(run[side]["found"].values())
            print(f"{index:>4} {side:8}" + "".join(f"{dice(run, side, n):11.3f}" for n in names)
                  + f"{found:>5}/{run[side]['cases']:<2}{run[side]['iterations']:>7}{run[side]['wall_s']:>8}"
                  f"{run['load_average_at_start']:>6}-{run['load_average_at_end']}")
        if len(sides) == 2:
            print(f"{index:>4} {'ratio':8}" + "".join(ratio(dice(run, "engine", n), dice(run, "plain", n)).rjust(11)
                                                       for n in names))
    if len(runs) > 1:
        for side in sides:
            values = {n: [dice(run, side, n) for run in runs] for n in names}
            print(f"{'all':>4} {side:8}" + "".join(f"{np.mean(v):.3f}±{(max(v) - min(v)) / 2:.2f}".rjust(11)
                                                   for v in values.values()) + "  (mean ± half the range)")
    if "engine" in runs[-1]:
        print("engine plan:", json.dumps(runs[-1]["engine"]["plan"]))


def ratio(engine: float, plain: float) -> str:
    return f"{engine / plain:.2f}" if plain > 0.005 else "–"


def markdown_table(results: list[dict]) -> str:
    """Each run of each side (Dice per class, mean, found, iterations, wall time, load), the ratio of paired
    runs, and per side the mean and range over the runs."""
    names = [n for n, v in COHORTS[results[0]["cohort"]][1].items() if v]
    lines = ["| run | side | " + " | ".join(names) + " | mean | found | iterations | wall s | load |",
             "|---" * (len(names) + 7) + "|"]
    per_side: dict[str, list[dict]] = {"engine": [], "plain": []}
    for index, run in enumerate((run for result in results for run in result["runs"]), 1):
        for side in ("engine", "plain"):
            if side in run:
                r = run[side]
                load = r.get("load", f"{run['load_average_at_start']}–{run['load_average_at_end']}")
                per_side[side].append(r)
                lines.append(f"| {index} | {side} | " + " | ".join(f"{r['dice'][n]:.3f}" for n in names)
                             + f" | **{r['mean_dice']:.3f}** | {min(r['found'].values())}/{r['cases']} | "
                             f"{r['iterations']} | {r['wall_s']} | {load} |")
        if "engine" in run and "plain" in run:
            e, p = run["engine"], run["plain"]
            lines.append(f"| {index} | ratio | " + " | ".join(ratio(e["dice"][n], p["dice"][n]) for n in names)
                         + f" | **{ratio(e['mean_dice'], p['mean_dice'])}** | | | | |")
    for side, runs in per_side.items():
        if runs:
            spread = lambda values: f"{np.mean(values):.3f} ({min(values):.3f}–{max(values):.3f})"  # noqa: E731
            lines.append(f"| all ({len(runs)}) | {side} | " + " | ".join(spread([r["dice"][n] for r in runs])
                                                                     for n in names)
                         + f" | **{spread([r['mean_dice'] for r in runs])}** | | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
