"""The annotation loop, simulated on a cohort with known labels (issue 20): does choosing the most uncertain
pool cases to correct give a better model than choosing at random, and than training from scratch on the
final labelled set for the same total time?

    python benchmarks/bench_active_learning.py [--start 45] [--round 20] [--rounds 5] [--pick 2]
                                               [--out docs/images/active_learning.png] [--json result.json]

Cohort: ``deepmed.phantoms.ct_cohort`` (organ, small low-contrast lesion, thin vessel), 4 labelled cases, a
pool of ``--pool`` cases whose true labels are kept aside, and ``--held-out`` cases from other seeds. A first
model trains on the 4 cases for ``--start`` seconds (shared by both strategies). Then, per round and strategy:
``review_pool`` ranks the pool (``uncertainty``: the boundary-band entropy score; ``random``: seeded order),
the top ``--pick`` cases are "corrected" with their true labels (``add_label`` when it is installed, else the
manifest API), and ``improve`` fine-tunes the promoted version for ``--round`` seconds and promotes it when its
held-out Dice is not worse. The held-out Dice reported per round is the promoted version's (what a user would
run). Finally a model trains from scratch on the uncertainty run's final labelled set for the loop's whole
training time (``start + rounds * round`` seconds; the loop's inference time is not counted for either side).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from deepmed.data.manifest import Dataset
from deepmed.phantoms.ct_cohort import write_ct_cohort
from deepmed.training.driver import train
from deepmed.workflows.improve import held_out_dice, improve
from deepmed.workflows.review import review_pool
from deepmed.zoo.library import resolve_model

START_CASES = 4


def label_case(manifest: Path, case_id: str, truth: Path) -> None:
    """Move pool case ``case_id`` to training with label ``truth`` (the panel's Accept)."""
    try:
        from deepmed.data.labels import add_label
    except ImportError:  # the other branch not merged yet: the same move through the manifest API
        dataset = Dataset.load(manifest)
        case = dataset.case(case_id)
        dataset.pool.remove(case)
        case.label = truth
        dataset.training.append(case)
        dataset.save(manifest)
        return
    add_label(manifest, case_id, truth)


def make_cohort(work: Path, pool: int, held_out: int, seed: int = 3) -> tuple[Path, dict[str, Path]]:
    """The manifest (4 labelled, ``pool`` unlabelled, ``held_out`` test cases) and the pool's true labels."""
    manifest = write_ct_cohort(work / "data", n_cases=START_CASES + pool, n_test=held_out, seed=seed)
    dataset = Dataset.load(manifest)
    truths = {}
    for case in dataset.training[START_CASES:]:
        truths[case.id] = case.label
        case.label = None
        dataset.pool.append(case)
    dataset.training = dataset.training[:START_CASES]
    dataset.save(manifest)
    return manifest, truths


def run_strategy(strategy: str, manifest: Path, truths: dict, library: Path, args, work: Path,
                 seed: int = 0) -> list[dict]:
    rounds = [{"round": 0, "labelled": START_CASES, "held_out_mean_dice": None, "picked": []}]
    for number in range(1, args.rounds + 1):
        ranked = review_pool(manifest, "loop", work / f"review-{strategy}-{seed}-{number}", strategy=strategy,
                             seed=seed * 1000 + number, limit=args.pick, library=library, device=args.device)
        picked = [r.case.case for r in ranked.ranking]
        for case_id in picked:
            label_case(manifest, case_id, truths[case_id])
        result = improve(manifest, "loop", args.round, library=library, device=args.device,
                         overrides=tuple(args.set))
        comparison = result.comparison
        promoted = comparison.new if comparison.promoted else comparison.old
        if rounds[0]["held_out_mean_dice"] is None:
            rounds[0]["held_out_mean_dice"] = comparison.old_mean
            rounds[0]["held_out_dice"] = comparison.old
        rounds.append({"round": number, "labelled": len(Dataset.load(manifest).training), "picked": picked,
                       "scores": [r.case.score for r in ranked.ranking], "promoted": comparison.promoted,
                       "candidate_mean_dice": comparison.new_mean,
                       "held_out_mean_dice": comparison.new_mean if comparison.promoted else comparison.old_mean,
                       "held_out_dice": promoted})
        print(json.dumps({"strategy": strategy, "seed": seed, **rounds[-1]}), flush=True)
    return rounds


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    runs = [("uncertainty", "o-", "uncertainty selection + fine-tuning")]
    runs += [(key, "s--", f"random selection (shuffle {key[6:] or 0}) + fine-tuning")
             for key in results if key.startswith("random") and not key.endswith("_library")]
    for key, marker, label in runs:
        rounds = results[key]
        axes.plot([r["labelled"] for r in rounds], [r["held_out_mean_dice"] for r in rounds], marker, label=label)
    scratch = results["scratch"]
    axes.plot([scratch["labelled"]], [scratch["held_out_mean_dice"]], "k*", markersize=12,
              label=f"from scratch, same total time ({scratch['seconds']} s)")
    axes.set_xlabel("labelled cases")
    axes.set_ylabel("held-out mean Dice (organ, lesion, vessel)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=float, default=45, help="seconds of the first training (4 cases)")
    parser.add_argument("--round", type=float, default=20, help="seconds of fine-tuning per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pick", type=int, default=2, help="pool cases corrected per round")
    parser.add_argument("--pool", type=int, default=14)
    parser.add_argument("--held-out", type=int, default=5)
    parser.add_argument("--cohort-seed", type=int, default=3)
    parser.add_argument("--random-runs", type=int, default=1, help="random runs, each with its own shuffle")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="training setting for every training")
    parser.add_argument("--out", type=Path, default=Path("docs/images/active_learning.png"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest, truths = make_cohort(work, args.pool, args.held_out, args.cohort_seed)
        first = work / "first"
        first.mkdir()
        train(manifest, first / "loop", time_limit=args.start, device=args.device, overrides=tuple(args.set),
              progress="none")
        results = {}
        runs = [("uncertainty", "uncertainty", 0)] + [("random" + (str(k) if k else ""), "random", k)
                                                      for k in range(args.random_runs)]
        for key, strategy, seed in runs:
            library = work / f"library-{key}"
            shutil.copytree(first, library)
            copy = work / f"data-{key}"
            shutil.copytree(manifest.parent, copy)
            results[key] = run_strategy(strategy, copy / manifest.name, truths_in(truths, manifest, copy),
                                        library, args, work, seed)
            results[f"{key}_library"] = str(resolve_model("loop", library).name)
        final = Dataset.load(work / "data-uncertainty" / manifest.name)
        seconds = args.start + args.rounds * args.round
        scratch_dir = train(final, work / "scratch", time_limit=seconds, device=args.device,
                            overrides=tuple(args.set), progress="none")
        dice = held_out_dice(scratch_dir, final.test, args.device)
        results["scratch"] = {"labelled": len(final.training), "seconds": seconds, "held_out_dice": dice,
                              "held_out_mean_dice": sum(dice.values()) / len(dice)}
        results["settings"] = {k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items()}
        results["wall_s"] = round(time.time() - began, 1)
    print(json.dumps(results["scratch"]))
    keys = ["uncertainty"] + [key for key, _, _ in runs[1:]]
    table = ["| labelled cases | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for index, first_run in enumerate(results["uncertainty"]):
        table.append(f"| {first_run['labelled']} | "
                     + " | ".join(f"{results[key][index]['held_out_mean_dice']:.3f}" for key in keys) + " |")
    table.append(f"| {results['scratch']['labelled']} (from scratch, {seconds:g} s) | "
                 f"{results['scratch']['held_out_mean_dice']:.3f} |" + " |" * (len(keys) - 1))
    print("\n".join(table))
    plot(results, args.out)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


def truths_in(truths: dict, manifest: Path, copy: Path) -> dict:
    """The pool's true labels inside the copied cohort folder."""
    return {case: copy / Path(path).relative_to(manifest.parent) for case, path in truths.items()}


if __name__ == "__main__":
    main()
