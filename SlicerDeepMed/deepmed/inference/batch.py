"""Batch inference: the cases of a folder or a manifest, one prediction each, a per-case summary and, for
case-level outputs, one ``results.csv``. The CLI, the demos and the Python API all call this through
:meth:`deepmed.inference.predictor.Predictor.predict_many`; one unreadable case does not end a batch."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deepmed.errors import DeepMedError
from deepmed.inference.options import InferenceOptions


@dataclass(frozen=True)
class CaseJob:
    """One case of a batch: its id, its input files (one per channel) and where its result goes."""

    case_id: str
    inputs: tuple[Path, ...]
    output: Path


@dataclass(frozen=True)
class CaseOutcome:
    """What happened to one case: its output (None when skipped, with the reason) and the time it took."""

    case_id: str
    output: Path | None
    seconds: float
    values: dict = field(default_factory=dict)
    skipped: str | None = None


@dataclass(frozen=True)
class BatchResult:
    """The outcome of every case, in order, and the case-level table when the model gives values."""

    outcomes: tuple[CaseOutcome, ...]
    table: Path | None = None

    @property
    def done(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if o.skipped is None]

    @property
    def skipped(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if o.skipped is not None]


@dataclass(frozen=True)
class ExtraOutputs:
    """Where the optional per-case maps go: folders (``CASE.nii.gz`` in each), or, with ``files``, the files
    themselves (a single case); None: not written."""

    probabilities: Path | None = None
    uncertainty: Path | None = None
    files: bool = False

    def path(self, base: Path, case_id: str) -> Path:
        if self.files:
            return Path(base)
        Path(base).mkdir(exist_ok=True)
        return Path(base) / f"{case_id}.nii.gz"


RESULTS_TABLE = "results.csv"
DEFAULT_OPTIONS = InferenceOptions()
NO_EXTRAS = ExtraOutputs()


def cases_in(source: Path, output: Path, suffix: str) -> list[CaseJob]:
    """The jobs for ``source`` (a folder of images, or a manifest / nnU-Net-style folder: its test cases, else
    its training cases), each written to ``output/CASE{suffix}``; ``output`` is created (not its parents)."""
    from deepmed.data.manifest import Dataset, case_id_from_path
    from deepmed.io.image_io import is_image_file

    source = Path(source)
    if source.is_dir() and not (source / "dataset.json").exists() and not (source / "imagesTr").exists():
        cases = [(case_id_from_path(f.name), [f]) for f in sorted(source.iterdir()) if is_image_file(f)]
    else:
        dataset = Dataset.load(source)
        cases = [(c.id, c.images) for c in dataset.test or dataset.training]
    if not cases:
        raise DeepMedError(f"{source}: no images to process")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise DeepMedError(f"{output}: batch output must be a folder")
    if not output.parent.is_dir():
        raise DeepMedError(f"{output}: output folder {output.parent} does not exist")
    output.mkdir(exist_ok=True)
    return [CaseJob(case_id, tuple(Path(p) for p in images), output / f"{case_id}{suffix}")
            for case_id, images in cases]


def check_outputs(jobs: Sequence[CaseJob], force: bool) -> None:
    """Refuse, before any work, to overwrite a result unless ``force``."""
    from deepmed.utils.atomic import check_output_folder

    for job in jobs:
        check_output_folder(job.output)
        if job.output.exists() and not force:
            raise DeepMedError(f"{job.output}: already exists; pass --force to overwrite it")


Emit = Callable[..., None]


def predict_many(predictor, jobs: Sequence[CaseJob], options: InferenceOptions = DEFAULT_OPTIONS, *,
                 extras: ExtraOutputs = NO_EXTRAS, table_folder: Path | None = None,
                 emit: Emit | None = None, keep_going: bool = True, dist=None,
                 score: bool | None = None) -> BatchResult:
    """Predict and write every job with ``predictor`` in turn (one case in memory at a time). A case that
    fails with a DeepMedError is skipped with its reason; all cases skipped is an error. ``emit(event,
    **fields)`` receives one ``inference`` event per case (progress). Case-level values of all cases go to
    ``table_folder/results.csv`` when given. ``keep_going=False``: the first failure is raised.

    ``dist`` (a :class:`deepmed.distributed.DistributedContext`, under torchrun): each rank predicts every
    ``world_size``-th case; all ranks return every case's outcome, in job order; rank 0 alone reports progress
    and writes the table.

    ``score`` (default: when a table is written): for segmentation models, each case's uncertainty score
    (:func:`deepmed.evaluation.uncertainty.case_uncertainty`) among its values, from the same prediction."""
    from deepmed.io.image_io import write_image

    score = (table_folder is not None) if score is None else score
    score = score and predictor.output_kind == "label_map"
    run_options = options.with_probabilities() if extras.probabilities is not None else options
    if extras.uncertainty is not None or score:
        run_options = run_options.with_uncertainty()
    main = dist is None or dist.is_main
    mine = list(enumerate(jobs)) if dist is None else list(enumerate(jobs))[dist.rank::dist.world_size]
    outcomes: list[tuple[int, CaseOutcome]] = []
    for index, job in mine:
        started = time.perf_counter()
        try:
            result = predictor.predict(list(job.inputs), **run_options.as_kwargs())
        except DeepMedError as exc:
            if not keep_going:
                raise
            outcome = CaseOutcome(job.case_id, None, round(time.perf_counter() - started, 2), skipped=str(exc))
        else:
            predictor.write(result, job.output, sources=job.inputs)
            for folder, image in ((extras.probabilities, result.probabilities),
                                  (extras.uncertainty, result.uncertainty)):
                if folder is not None and image is not None:
                    write_image(image, extras.path(folder, job.case_id))
            values = dict(result.values or {})
            if score and result.uncertainty is not None:
                values.update(_score(result).as_values())
            outcome = CaseOutcome(job.case_id, job.output, round(time.perf_counter() - started, 2), values)
        outcomes.append((index, outcome))
        if emit is not None and main:
            emit("inference", case=job.case_id, index=index, total=len(jobs),
                 output=None if outcome.output is None else str(outcome.output), seconds=outcome.seconds,
                 **({"skipped": outcome.skipped} if outcome.skipped else {}))
    if dist is not None:  # every rank's share, back in job order
        outcomes = sorted((pair for share in dist.gather(outcomes) for pair in share), key=lambda pair: pair[0])
    outcomes = [outcome for _, outcome in outcomes]
    if dist is not None and main and emit is not None:  # the other ranks' cases, summarised by rank 0
        emit("batch", total=len(outcomes), ranks=dist.world_size,
             cases=[{"case": o.case_id, "output": None if o.output is None else str(o.output), "seconds": o.seconds,
                     **({"skipped": o.skipped} if o.skipped else {})} for o in outcomes])
    if outcomes and all(o.skipped for o in outcomes):
        raise DeepMedError(f"no case could be processed ({len(outcomes)} skipped; first: {outcomes[0].skipped})")
    table = _write_table(outcomes, Path(table_folder) / RESULTS_TABLE) if table_folder is not None and main else None
    return BatchResult(tuple(outcomes), table)


def _score(result):
    """The uncertainty score of a segmentation (its label map and entropy map, both on the input grid)."""
    import SimpleITK as sitk

    from deepmed.evaluation.uncertainty import case_uncertainty

    return case_uncertainty(sitk.GetArrayViewFromImage(result.output), sitk.GetArrayViewFromImage(result.uncertainty))


def _write_table(outcomes: Sequence[CaseOutcome], path: Path) -> Path | None:
    """One row per case with values (the case-level results of a batch), written atomically; None if none."""
    from deepmed.utils.atomic import write_text_atomic
    from deepmed.utils.tables import rows_to_csv

    rows = [{"case": o.case_id, **o.values} for o in outcomes if o.values]
    return write_text_atomic(path, rows_to_csv(rows)) if rows else None
