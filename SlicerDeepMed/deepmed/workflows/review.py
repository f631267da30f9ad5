"""Rank a dataset's pool of unlabelled cases for review (``deepmed review``): predict each case once with a
model, write its label map and uncertainty map on the case's exact grid, score it
(:mod:`deepmed.evaluation.uncertainty`) and rank.

``REVIEW_DIR`` holds ``predictions/CASE.nii.gz``, ``uncertainty/CASE.nii.gz``, ``ranking.csv`` (rank, case,
score, band_voxels, prediction, uncertainty, model, model_version, weights_sha256; paths relative to
``REVIEW_DIR``) and ``review.json`` (the same per case, saved after every case): a rerun with the same
model weights reuses the cases already predicted, another model predicts them again.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.utils.atomic import write_text_atomic

STRATEGIES = ("uncertainty", "random", "first")
STATE_FILE = "review.json"
RANKING_FILE = "ranking.csv"


@dataclass(frozen=True)
class ReviewedCase:
    """One pool case as predicted for review (paths relative to the review folder)."""

    case: str
    score: float | None
    band_voxels: int
    prediction: str
    uncertainty: str
    weights_sha256: str


@dataclass(frozen=True)
class RankedCase:
    rank: int
    case: ReviewedCase


@dataclass(frozen=True)
class ReviewResult:
    ranking: list[RankedCase]
    ranking_file: Path
    predicted: int  # cases predicted now
    reused: int     # cases kept from an earlier run with the same weights
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (case, why) of cases that could not be read


def _state(folder: Path) -> dict:
    path = folder / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("cases", {})
    except (OSError, ValueError, AttributeError):
        return {}  # a damaged state only costs recomputation


def order(cases: list, strategy: str, seed: int = 0) -> list:
    """The review order: ``uncertainty``: highest ``score`` first (ties and unscored cases: pool order);
    ``random``: shuffled with ``seed``; ``first``: pool order."""
    if strategy == "uncertainty":
        return sorted(cases, key=lambda c: -(c.score if c.score is not None else -1.0))
    if strategy == "random":
        shuffled = list(cases)
        random.Random(seed).shuffle(shuffled)
        return shuffled
    if strategy == "first":
        return list(cases)
    raise DeepMedError(f"--strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")


def review_pool(dataset, model, out: Path, *, strategy: str = "uncertainty", seed: int = 0,
                limit: int | None = None, device: str = "auto", library: Path | None = None,
                emit=None) -> ReviewResult:
    """Predict and rank the pool of ``dataset`` (a Dataset or manifest path) with ``model`` (a directory or
    library id) into ``out``. ``limit``: rank only that many (``random`` / ``first`` then predict only those;
    ``uncertainty`` needs every score first). ``emit(event, **fields)``: one ``inference`` event per case."""
    from deepmed.data.manifest import Dataset
    from deepmed.inference.batch import CaseJob, ExtraOutputs
    from deepmed.inference.predictor import Predictor
    from deepmed.model.directory import WEIGHTS
    from deepmed.model.transfer import file_sha256
    from deepmed.zoo.library import resolve_model
    from deepmed.zoo.versions import split_version

    if strategy not in STRATEGIES:
        raise DeepMedError(f"--strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if limit is not None and limit < 1:
        raise DeepMedError(f"--limit: expected a positive number of cases, got {limit}")
    dataset = dataset if isinstance(dataset, Dataset) else Dataset.load(dataset)
    if not dataset.pool:
        raise DeepMedError(f"{dataset.source or dataset.name}: no 'pool' of unlabelled cases to review")
    model_dir = resolve_model(model, library)
    out = Path(out)
    if not out.parent.is_dir():
        raise DeepMedError(f"{out}: output folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    sha = file_sha256(model_dir / WEIGHTS)
    pool = order(list(dataset.pool), strategy, seed) if strategy != "uncertainty" else list(dataset.pool)
    if strategy != "uncertainty":
        pool = pool[:limit]  # already in review order: only these are predicted
    state = _state(out)
    predictor = None
    reviewed, predicted, skipped = [], 0, []
    for index, case in enumerate(pool):
        entry = _reusable(state.get(case.id), sha, out)
        reused = entry is not None
        if entry is None:
            if predictor is None:
                predictor = Predictor(model_dir, device)
                if predictor.output_kind != "label_map":
                    raise DeepMedError(f"{model_dir}: review ranks segmentations; this model outputs "
                                       f"{predictor.output_kind}")
            prediction = Path("predictions") / f"{case.id}.nii.gz"
            uncertainty = Path("uncertainty") / f"{case.id}.nii.gz"
            (out / "predictions").mkdir(exist_ok=True)
            job = CaseJob(case.id, tuple(case.images), out / prediction)
            try:
                result = predictor.predict_many([job], force=True, keep_going=False, score=True,
                                                extras=ExtraOutputs(uncertainty=out / "uncertainty"))
            except DeepMedError as exc:  # an unreadable case is left out of the ranking, with its reason
                skipped.append((case.id, str(exc)))
                if emit is not None:
                    emit("inference", case=case.id, index=index, total=len(pool), output=None, skipped=str(exc))
                continue
            values = result.outcomes[0].values
            entry = ReviewedCase(case.id, values.get("uncertainty"), int(values.get("uncertainty_band_voxels", 0)),
                                 prediction.as_posix(), uncertainty.as_posix(), sha)
            state[case.id] = asdict(entry)
            _save_state(out, model_dir, state)
            predicted += 1
        reviewed.append(entry)
        if emit is not None:
            emit("inference", case=case.id, index=index, total=len(pool), output=str(out / entry.prediction),
                 score=entry.score, reused=reused)
    if not reviewed:
        raise DeepMedError(f"no pool case could be predicted ({len(skipped)} skipped; first: {skipped[0][1]})")
    ranked = (order(reviewed, strategy) if strategy == "uncertainty" else reviewed)[:limit]
    name, number = split_version(model_dir.name)
    ranking = [RankedCase(i + 1, c) for i, c in enumerate(ranked)]
    path = _write_ranking(out, ranking, name, number or 1)
    if emit is not None:
        emit("ranking", path=str(path), strategy=strategy, cases=[r.case.case for r in ranking])
    return ReviewResult(ranking, path, predicted, len(reviewed) - predicted, skipped)


def _reusable(known, sha: str, out: Path) -> ReviewedCase | None:
    """The earlier result of a case when the same weights made it and its files are still there."""
    try:
        entry = ReviewedCase(**known)
    except TypeError:  # none, or written by another version of this module: predict again
        return None
    files = (out / entry.prediction, out / entry.uncertainty)
    return entry if entry.weights_sha256 == sha and all(f.is_file() for f in files) else None


def _save_state(out: Path, model_dir: Path, cases: dict) -> None:
    document = {"model": str(model_dir), "cases": cases}
    write_text_atomic(out / STATE_FILE, json.dumps(document, indent=1) + "\n")


def _write_ranking(out: Path, ranking: list[RankedCase], model: str, version: int) -> Path:
    from deepmed.utils.tables import rows_to_csv

    rows = [{"rank": r.rank, "case": r.case.case, "score": "" if r.case.score is None else r.case.score,
             "band_voxels": r.case.band_voxels, "prediction": r.case.prediction,
             "uncertainty": r.case.uncertainty, "model": model, "model_version": version,
             "weights_sha256": r.case.weights_sha256} for r in ranking]
    return write_text_atomic(out / RANKING_FILE, rows_to_csv(rows))


def read_ranking(path: Path) -> list[dict]:
    """The rows of a ``ranking.csv`` (strings), best first."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
