"""Cross-validation folds and train/validation/test fractions, stored in the manifest's ``splits``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepmed.data.manifest import Dataset, parse_splits
from deepmed.errors import DeepMedError
from deepmed.utils.atomic import write_text_atomic


def kfold_splits(case_ids: list[str], folds: int, seed: int = 0) -> list[dict[str, list[str]]]:
    """Shuffle ``case_ids`` with ``seed`` and cut them into ``folds`` folds (nnU-Net's splits_final format)."""
    if folds < 2:
        raise DeepMedError(f"--folds must be at least 2, got {folds}")
    if folds > len(case_ids):
        raise DeepMedError(f"--folds {folds} needs at least {folds} training cases, the dataset has {len(case_ids)}")
    order = list(np.random.default_rng(seed).permutation(sorted(case_ids)))
    parts = np.array_split(np.array(order, dtype=object), folds)
    return [{"train": sorted(str(i) for j, p in enumerate(parts) if j != k for i in p),
             "val": sorted(str(i) for i in parts[k])} for k in range(folds)]


def fraction_split(case_ids: list[str], train: float, val: float, test: float, seed: int = 0) -> dict[str, list[str]]:
    """One split by fractions (they must sum to 1); every non-empty fraction gets at least one case."""
    fractions = {"train": train, "val": val, "test": test}
    for name, f in fractions.items():
        if not 0 <= f <= 1:
            raise DeepMedError(f"{name} fraction must be in [0, 1], not {f}")
    if abs(sum(fractions.values()) - 1) > 1e-6:
        total = train + val + test
        raise DeepMedError(f"train/val/test fractions must sum to 1, got {train} + {val} + {test} = {total:g}")
    order = [str(i) for i in np.random.default_rng(seed).permutation(sorted(case_ids))]
    n = len(order)
    n_val = max(1, round(val * n)) if val > 0 else 0
    n_test = max(1, round(test * n)) if test > 0 else 0
    if n - n_val - n_test < 1:
        raise DeepMedError(f"{n} case(s) are too few for fractions train {train}, val {val}, test {test}")
    return {"train": sorted(order[n_val + n_test:]), "val": sorted(order[:n_val]),
            "test": sorted(order[n_val:n_val + n_test])}


def add_splits(dataset: Dataset, *, folds: int | None = None, fractions: tuple[float, float, float] | None = None,
               seed: int = 0) -> Dataset:
    """Replace the dataset's splits by k folds or by one train/val/test split."""
    ids = [c.id for c in dataset.training]
    if fractions is not None:
        dataset.splits = [fraction_split(ids, *fractions, seed=seed)]
    else:
        dataset.splits = kfold_splits(ids, folds or 5, seed)
    return dataset


#: Cross-validation folds made for a manifest without ``splits`` are kept beside it in this file (nnU-Net's
#: ``splits_final.json`` format: a list of {"train": [...], "val": [...]}); the manifest itself is never rewritten.
SPLITS_SUFFIX = ".splits.json"
DEFAULT_FOLDS = 5  # nnU-Net's


@dataclass(frozen=True)
class CrossValidationSplits:
    """The folds a cross-validation uses, where they came from (``made`` or ``saved``) and the file beside the
    manifest that keeps them (None when the dataset has no file)."""

    splits: list[dict[str, list[str]]]
    origin: str
    path: Path | None

    def note(self) -> str:
        """The one line that says so."""
        if self.origin == "saved":
            return f"folds: reusing the {len(self.splits)} splits saved in {self.path}"
        where = f"saved to {self.path} (reused by the next run; the manifest is unchanged)" if self.path else \
            "kept in the model directory only (the dataset has no file to save them beside)"
        return f"folds: the manifest has no splits; made {len(self.splits)} (seeded), {where}"


def splits_file(dataset: Dataset) -> Path | None:
    """``dataset.splits.json`` beside ``dataset.json`` (``cases.splits.json`` beside ``cases.csv``)."""
    if dataset.source is None:
        return None
    source = Path(dataset.source)
    return source.with_name(source.stem + SPLITS_SUFFIX)


def cross_validation_splits(dataset: Dataset, folds: int | None, seed: int = 0) -> CrossValidationSplits:
    """Folds for a manifest without ``splits``: those saved beside it by an earlier run, or ``folds`` (default 5)
    new ones, shuffled with ``seed`` and saved beside it. ``folds`` must match a saved file's count."""
    path = splits_file(dataset)
    if path is not None and path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DeepMedError(f"{path}: cannot read the saved splits ({exc}); delete it to make new ones") from None
        problems: list[str] = []
        splits = parse_splits(raw, dataset, str(path), problems)
        unused = sorted({c.id for c in dataset.training} - {i for s in splits for i in s.get("val", [])})
        if unused:
            problems.append(f"{path}: case(s) {', '.join(unused[:3])} are in no fold's 'val'")
        if problems or not splits:
            raise DeepMedError(f"{(problems or [f'{path}: no splits'])[0]}; the dataset changed since the splits "
                               f"were made: delete {path.name} to make new ones")
        if folds is not None and folds != len(splits):
            raise DeepMedError(f"--folds {folds}: {path} holds {len(splits)} splits; pass --folds all (or "
                               f"{len(splits)}), or delete it to make {folds} new ones")
        return CrossValidationSplits(splits, "saved", path)
    splits = kfold_splits([c.id for c in dataset.training], folds or DEFAULT_FOLDS, seed)
    if path is not None:
        write_text_atomic(path, json.dumps(splits, indent=2) + "\n")
    return CrossValidationSplits(splits, "made", path)
