"""Cross-validation folds and train/validation/test fractions, stored in the manifest's ``splits``."""

from __future__ import annotations

import numpy as np

from deepmed.data.manifest import Dataset
from deepmed.errors import DeepMedError


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
