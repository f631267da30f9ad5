"""What a training is asked to do, as one typed value (``deepmed train``, the Python API, cross-validation)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepmed.errors import DeepMedError
from deepmed.planning.plan import Plan


@dataclass(frozen=True)
class TrainRequest:
    """A training to run.

    Attributes:
        dataset: a ``Dataset`` or a path (manifest, CSV, nnU-Net folder).
        out: model directory to create (or to continue with ``resume`` / ``extend``).
        app: an application name (default from the config, else segmentation).
        config: YAML/JSON path or dict; ``overrides``: ``("training.epochs=10", ...)`` (``--set`` text).
        epochs, device, fold: typed shortcuts for ``training.epochs`` / ``training.device`` / ``training.fold``.
        time_limit: train to this wall-time budget (seconds or ``"10m"``, ``"1h30m"``), ending on time.
        resume: continue a stopped run from ``out/checkpoints/last`` with the saved configuration.
        extend: continue a finished model for this much more time (a fresh, lower learning-rate schedule).
        init: fine-tune from this model's weights (a model directory, or a library id when ``resolve_model``
            turns ids into directories); ``init_fold``: the fold of an ensemble. Not with resume / extend.
        started_at: when the run began (``time.time()``); the time budget counts from there.
        stop_file: a file whose appearance asks the run to stop (with a checkpoint).
        progress: ``tqdm``, ``jsonl``, ``none``, or a callable receiving each event as a dict.
        shared_plan: a plan whose decisions replace this run's own (the folds of a cross-validation share one).
    """

    dataset: Any
    out: Path
    app: str | None = None
    config: Any = None
    overrides: tuple[str, ...] = ()
    epochs: int | None = None
    device: str | None = None
    fold: int | None = None
    time_limit: Any = None
    resume: bool = False
    extend: Any = None
    init: str | None = None
    init_fold: int | None = None
    started_at: float = field(default_factory=time.time)
    stop_file: Path | None = None
    progress: Any = "tqdm"
    shared_plan: Plan | None = None
    resolve_model: Callable[[str], Path] | None = None

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "overrides", tuple(self.overrides or ()))
        if self.stop_file is not None:
            object.__setattr__(self, "stop_file", Path(self.stop_file).absolute())
        if self.started_at is None:
            object.__setattr__(self, "started_at", time.time())

    @property
    def continuing(self) -> str | None:
        """``resume`` or ``extend`` when the request continues a model from its checkpoint, else None."""
        if self.resume and self.extend:
            raise DeepMedError("--resume continues a stopped run, --extend a finished one: choose one")
        return "resume" if self.resume else ("extend" if self.extend else None)

    def typed_settings(self) -> dict[str, Any]:
        """The configuration values this request sets (by dotted key), applied after the config and ``--set``."""
        values = {"app": self.app, "training.epochs": self.epochs, "training.device": self.device,
                  "training.fold": self.fold, "training.time_limit": self.extend or self.time_limit,
                  "training.init": None if self.init is None else str(self.init),
                  "training.init_fold": self.init_fold}
        return {key: value for key, value in values.items() if value is not None}
