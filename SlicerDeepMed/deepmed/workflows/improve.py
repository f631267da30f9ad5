"""Improve a library model on a grown dataset (``deepmed improve``): fine-tune its current weights for a
time budget, judge old and new on a fixed held-out set, and promote the new version only when it is not worse.

* The held-out set is chosen once per model, on its first improvement, and recorded in the library
  (``LIBRARY/NAME.versions.json``, zoo/versions.py): the manifest's labelled ``test`` cases when it has some,
  else ``HELD_OUT_SHARE`` of its labelled training cases (at least one; drawn with a fixed seed). Those cases
  never train a new version. (Version 1 may have trained on them when it was trained outside this loop: the
  comparison then favours the old version, which only makes promotion more cautious.)
* The new version ``NAME@N`` starts from the old weights (``--init``: the learning-rate schedule restarts at
  ``training.init_lr_factor`` of the rate and follows the budget; docs/fine_tuning.md) and trains on every
  other labelled case; no validation split (nothing chosen on the held-out cases).
* Promotion: the mean over labels of the held-out Dice (each label's Dice averaged over the cases) must be at
  least the old one minus ``tolerance`` (default ``DEFAULT_TOLERANCE``). Otherwise the new version is kept
  but not promoted: ``NAME`` still resolves to the old one.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.model.directory import CONFIG
from deepmed.training.driver import train
from deepmed.utils.atomic import write_text_atomic
from deepmed.zoo.versions import DEFAULT_TOLERANCE

HELD_OUT_SHARE = 0.2
COMPARISON_FILE = "improvement.json"
COMPARISON_TABLE = "improvement.txt"


@dataclass(frozen=True)
class Comparison:
    """Held-out Dice per label (averaged over the cases) of the old and the new version, and the verdict."""

    cases: list[str]
    old: dict[str, float]
    new: dict[str, float]
    old_mean: float
    new_mean: float
    tolerance: float
    promoted: bool

    def table(self) -> str:
        rows = [f"{'label':16s} {'old':>7s} {'new':>7s} {'change':>8s}"]
        for name in self.old:
            old, new = self.old[name], self.new[name]
            rows.append(f"{name:16s} {old:7.4f} {new:7.4f} {new - old:+8.4f}")
        rows.append(f"{'mean':16s} {self.old_mean:7.4f} {self.new_mean:7.4f} {self.new_mean - self.old_mean:+8.4f}")
        verdict = "promoted" if self.promoted else f"not promoted (new mean < old mean - {self.tolerance:g})"
        return "\n".join(rows) + f"\n{len(self.cases)} held-out case(s); {verdict}\n"


@dataclass(frozen=True)
class ImproveResult:
    name: str
    old_version: int
    new_version: int
    new_dir: Path
    comparison: Comparison
    trained_cases: list[str] = field(default_factory=list)

    @property
    def promoted(self) -> bool:
        return self.comparison.promoted


def held_out_dice(model_dir: Path, cases: list, device: str = "auto") -> dict[str, float]:
    """Dice per foreground label of ``model_dir`` on labelled ``cases`` (manifest Cases), averaged over the
    cases; predictions on each case's own grid, one case in memory at a time."""
    import numpy as np
    import SimpleITK as sitk

    from deepmed.evaluation.segmentation_metrics import segmentation_metrics
    from deepmed.inference.predictor import Predictor

    predictor = Predictor(model_dir, device)
    labels = {label.value: label.name for label in predictor.card.foreground_labels}
    scores: dict[str, list[float]] = {name: [] for name in labels.values()}
    for case in cases:
        predicted = sitk.GetArrayFromImage(predictor.predict(list(case.images)).output)
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label)))
        if reference.shape != predicted.shape:
            raise DeepMedError(f"{case.label}: label grid {reference.shape} differs from its image's {predicted.shape}")
        metrics = segmentation_metrics(reference, predicted, (1.0, 1.0, 1.0), list(labels), distances=False)
        for value, name in labels.items():
            scores[name].append(metrics[value]["dice"])
    return {name: float(np.mean(values)) for name, values in scores.items()}


def choose_held_out(dataset, seed: int = 0) -> list[str]:
    """The labelled test cases, else ``HELD_OUT_SHARE`` of the labelled training cases (at least one, and at
    least one left to train)."""
    tests = [c.id for c in dataset.test if c.label is not None]
    if tests:
        return tests
    labelled = [c.id for c in dataset.training if c.label is not None]
    if len(labelled) < 2:
        raise DeepMedError(f"{dataset.source or dataset.name}: improving a model needs at least 2 labelled cases "
                           f"(one held out to judge it), got {len(labelled)}")
    count = min(len(labelled) - 1, max(1, round(HELD_OUT_SHARE * len(labelled))))
    return sorted(random.Random(seed).sample(sorted(labelled), count))


def improve(dataset, model, time_limit, *, library: Path | None = None, tolerance: float = DEFAULT_TOLERANCE,
            device: str = "auto", progress="none", overrides: tuple[str, ...] = (),
            emit=None) -> ImproveResult:
    """Fine-tune ``model`` (a library id: its promoted version; ``NAME@N``; or a library model's folder) on
    the labelled cases of ``dataset`` for ``time_limit`` (seconds or ``"5m"``), compare with the old version on
    the model's held-out cases and promote the new version when it is not worse (module docstring)."""
    from deepmed.data.manifest import Dataset
    from deepmed.zoo.library import resolve_model
    from deepmed.zoo.versions import next_version, read_versions, split_version, version_dir, write_versions

    dataset = dataset if isinstance(dataset, Dataset) else Dataset.load(dataset)
    old_dir = resolve_model(model, library)
    root, (name, number) = old_dir.parent, split_version(old_dir.name)
    old_version = number or 1
    versions = read_versions(root, name)
    if not versions.held_out:
        versions = replace(versions, held_out=tuple(choose_held_out(dataset)))
        write_versions(root, versions)  # chosen once: every later improvement is judged on the same cases
    held_out = _labelled(dataset, versions.held_out)
    training = [c for c in dataset.training if c.label is not None and c.id not in versions.held_out]
    if not training:
        raise DeepMedError(f"{dataset.source or dataset.name}: no labelled case left to train on besides the "
                           f"held-out ones ({', '.join(versions.held_out)})")
    subset = Dataset(name=dataset.name, description=dataset.description, channel_names=dict(dataset.channel_names),
                     labels=dict(dataset.labels), training=training, source=dataset.source)
    if emit is not None:
        emit("improve", model=name, old_version=old_version, new_version=next_version(root, name),
             train_cases=len(training), held_out=list(versions.held_out))
    config = old_dir / CONFIG if (old_dir / CONFIG).is_file() else None  # the old version's own settings
    # trained in a hidden folder of the library: a failed or stopped attempt uses up no version number
    staging = Path(tempfile.mkdtemp(prefix=f".improve-{name}-", dir=root))
    try:
        candidate = staging / "model"
        train(subset, candidate, config=config, init=str(old_dir), time_limit=time_limit,
              device=None if device == "auto" else device, overrides=tuple(overrides), progress=progress)
        old = held_out_dice(old_dir, held_out, device)
        new = held_out_dice(candidate, held_out, device)
        old_mean, new_mean = _mean(old), _mean(new)
        comparison = Comparison([c.id for c in held_out], old, new, old_mean, new_mean, tolerance,
                                new_mean >= old_mean - tolerance)
        new_version = next_version(root, name)  # allocated only now that the new model is complete
        document = {"model": name, "old_version": old_version, "new_version": new_version, **asdict(comparison),
                    "trained_on": [c.id for c in training]}
        write_text_atomic(candidate / COMPARISON_FILE, json.dumps(document, indent=2) + "\n")
        write_text_atomic(candidate / COMPARISON_TABLE, comparison.table())
        new_dir = version_dir(root, name, new_version)
        os.replace(candidate, new_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    entry = {"version": new_version, "from_version": old_version, "promoted": comparison.promoted,
             "old_mean_dice": round(old_mean, 6), "new_mean_dice": round(new_mean, 6),
             "trained_cases": len(training), "time_limit": str(time_limit),
             "dataset": str(dataset.source) if dataset.source else dataset.name,
             "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    versions = read_versions(root, name).recorded(entry)
    if comparison.promoted:
        versions = versions.promote(new_version)
    write_versions(root, versions)
    if emit is not None:
        emit("comparison", model=name, promoted=comparison.promoted, old=old, new=new, old_mean=old_mean,
             new_mean=new_mean, path=str(new_dir / COMPARISON_FILE))
    return ImproveResult(name, old_version, new_version, new_dir, comparison, [c.id for c in training])


def _labelled(dataset, ids) -> list:
    by_id = {c.id: c for c in dataset.training + dataset.test}
    missing = [i for i in ids if i not in by_id or by_id[i].label is None]
    if missing:
        raise DeepMedError(f"{dataset.source or dataset.name}: the model's held-out cases must stay labelled in the "
                           f"dataset; missing or unlabelled: {', '.join(missing[:6])}")
    return [by_id[i] for i in ids]


def _mean(values: dict[str, float]) -> float:
    return float(sum(values.values()) / len(values)) if values else 0.0
