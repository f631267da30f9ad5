"""Train a model in a background process; one training at a time (inference may still run).

    logic = TrainLogic()
    run = logic.train("dataset.json", name="liver", epochs=50, device="cuda", progressCallback=print)
    run.wait()  # or poll() from a QTimer

Settings travel as a typed JSON config file (``deepmed train --config``), never as ``--set`` strings.
Progress arrives as the engine's JSON-lines events; when a scene is given, the loss and validation
curves fill MRML tables shown in a plot chart. A finished model goes into the model library
(``ModelLibrary.changed`` fires) and appears in the Segment panel.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from slicer.i18n import tr as _

from DeepMedLib import ModelLibrary
from DeepMedLib.BackgroundJob import BackgroundJob
from DeepMedLib.EngineCommand import EngineRunner
from DeepMedLib.JobHandle import JobHandle
from DeepMedLib.Signal import Signal
from DeepMedLib.TrainingCurves import TrainingCurves


class TrainError(ValueError):
    pass


class TrainingRun(JobHandle):
    """A running training: ``progress`` fields for the panel, ``eventReceived``/``finished`` signals;
    ``stop()`` checkpoints (Resume continues), ``cancel()`` ends at once, ``wait()`` gives the JobResult."""

    def __init__(self, job: BackgroundJob, modelDir: Path, curves: TrainingCurves | None):
        self.modelDir, self.curves = modelDir, curves
        self.eventReceived = Signal("dict")
        self.finished = Signal("JobResult")
        self.epochs = self.iterationsPerEpoch = 0
        self.startEpoch = 0
        self.fraction = 0.0
        self.etaSeconds: float | None = None
        self.status = "starting"
        self.lastLoss: float | None = None
        self.lastMetrics: dict = {}
        self.startedAt = time.time()
        self.timeLimitSeconds: float | None = None
        self.trainingStartedAt: float | None = None
        job.eventReceived.connect(self._onEvent)
        super().__init__(job)

    def _onEvent(self, event: dict) -> None:
        kind = event["event"]
        if kind == "started":
            self.epochs, self.iterationsPerEpoch = event["epochs"], event["iterations_per_epoch"]
            self.startEpoch = event.get("start_epoch", 0)
            self.fraction = self.startEpoch / max(self.epochs, 1)
            self.status = _("training on {device}").format(device=event["device"])
            self.timeLimitSeconds = event.get("time_limit_s") or None
            self.trainingStartedAt = time.time()
        elif kind == "iteration":
            done = event["epoch"] * self.iterationsPerEpoch + event["iteration"] + 1
            self.fraction = done / max(self.epochs * self.iterationsPerEpoch, 1)
            self.etaSeconds, self.lastLoss = event.get("eta_s"), event["loss"]
            self.status = _("epoch {epoch}/{epochs}").format(epoch=event["epoch"] + 1, epochs=self.epochs)
        elif kind == "epoch":
            self.etaSeconds = event.get("eta_s")
            if self.curves is not None:
                self.curves.addEpoch(event["epoch"] + 1, event["loss"])
        elif kind == "validation":
            self.lastMetrics = {"epoch": event["epoch"] + 1, "key": event["key_metric"], **event["metrics"]}
            if self.curves is not None:
                self.curves.addValidation(event["epoch"] + 1, event["metrics"])
        elif kind == "finished":
            self.fraction, self.etaSeconds, self.status = 1.0, 0, "finished"
        elif kind == "stopped":
            self.status = _("stopped at epoch {epoch}; Resume continues from the checkpoint").format(
                epoch=event["epoch"] + 1)
        self.eventReceived.emit(event)

    def _onJobFinished(self, result) -> None:
        if self.job.stopFile is not None:
            shutil.rmtree(self.job.stopFile.parent, ignore_errors=True)  # the run's private stop-file folder
        if not result.succeeded and self.curves is not None and not self.curves.values(self.curves.lossTable):
            self.curves.removeFromScene()  # nothing was plotted: leave the scene as it was
            self.curves = None
        if result.succeeded:
            ModelLibrary.changed.emit(str(self.modelDir))
        elif result.status == "failed":
            self.status = _("failed: {error}").format(error=result.errorMessage)
        elif result.status == "cancelled":
            self.status = "cancelled"
        self.finished.emit(result)

    def summary(self) -> str:
        """One line for the panel: epoch, loss, key metric, ETA."""
        parts = [self.status]
        if self.lastLoss is not None:
            parts.append(_("loss {value}").format(value=f"{self.lastLoss:.4f}"))
        if self.lastMetrics:
            key = self.lastMetrics["key"]
            parts.append(f"{key} {self.lastMetrics[key]:.3f}")
        remaining = self.remainingSeconds()
        if remaining is not None:
            minutes, seconds = divmod(int(remaining), 60)
            parts.append(_("{time} of the time budget left").format(time=f"{minutes}:{seconds:02d}"))
        elif self.etaSeconds:
            minutes, seconds = divmod(int(self.etaSeconds), 60)
            parts.append(_("ETA {time}").format(time=f"{minutes}:{seconds:02d}"))
        return " | ".join(parts)

    def remainingSeconds(self, now: float | None = None):
        """Time left of the budget (``time_limit_s`` of the ``started`` event), or None without one."""
        if not self.timeLimitSeconds or self.trainingStartedAt is None or self.status in ("finished", "cancelled"):
            return None
        return max(0.0, self.timeLimitSeconds - ((now or time.time()) - self.trainingStartedAt))


class TrainLogic:
    """Starts trainings. Only one runs at a time, across every TrainLogic in this Slicer session.

    ``runner``: makes the worker processes (``EngineRunner``); tests may pass one that records instead.
    """

    activeRun: TrainingRun | None = None

    def __init__(self, runner: EngineRunner | None = None):
        self.runner = runner or EngineRunner()

    def train(self, dataset, name: str | None = None, outputDir=None, application: str | None = None,
              epochs: int | None = None, device: str = "auto", settings: dict | None = None, resume: bool = False,
              scene=None, progressCallback=None, wait: bool = False, timeout: float | None = None,
              processEvents=None, timeLimitSeconds: float = 0, initModel=None, runner=None) -> TrainingRun:
        """Start training on a dataset (manifest or folder); the model goes to ``outputDir`` or a new library
        folder.

        ``settings``: engine settings by dotted key, typed, e.g. ``{"training.batch_size": 2, "optimizer.lr":
        1e-4}``. ``timeLimitSeconds``: train to a time budget (0: the epochs given). ``progressCallback(event)``
        gets every JSON-lines event. ``resume`` continues ``outputDir`` with its saved configuration.
        ``initModel``: fine-tune, starting from this library model (id, directory or InstalledModel) made for
        the same application, instead of random weights. ``runner``: where the worker runs (default this
        logic's; a RemoteEngineRunner trains on a remote machine).
        """
        if TrainLogic.activeRun is not None and TrainLogic.activeRun.job.running:
            raise TrainError(_("a training is already running ({model}); stop it first").format(
                model=TrainLogic.activeRun.modelDir))
        dataset = Path(dataset)
        if not dataset.exists():
            raise TrainError(_("{dataset}: dataset not found").format(dataset=dataset))
        if resume:
            if outputDir is None or not (Path(outputDir) / "checkpoints" / "last").is_dir():
                raise TrainError(_("{folder}: nothing to resume (no checkpoints/last)").format(folder=outputDir))
            modelDir = Path(outputDir)
        else:
            modelDir = Path(outputDir) if outputDir else ModelLibrary.new_model_dir(name or dataset.stem)
            if modelDir.exists() and any(modelDir.iterdir()):
                raise TrainError(_("{folder}: already exists and is not empty; choose another name (or Resume)").format(
                    folder=modelDir))
        start = startingModel(initModel, application) if initModel and not resume else None
        runFolder = Path(tempfile.mkdtemp(prefix="deepmed-train-"))
        stopFile = runFolder / "stop"
        arguments = ["train", "--dataset", dataset, "--out", modelDir, "--progress", "jsonl", "--stop-file", stopFile]
        if resume:
            arguments += ["--resume"] + (["--epochs", int(epochs)] if epochs else [])
        else:
            settings = dict(settings or {})
            if start is not None:
                settings["training.init"] = str(start.path)
            config = trainingConfig(application, epochs, device, settings, timeLimitSeconds)
            configFile = runFolder / "config.json"
            configFile.write_text(json.dumps(config, indent=2), encoding="utf-8")
            arguments += ["--config", configFile]
        job = (runner or self.runner).job(f"training of {modelDir.name}", *arguments, stopFile=stopFile)
        return self._start(job, modelDir, scene, progressCallback, wait, timeout, processEvents)

    def reattach(self, jobFile, modelDir, runner, scene=None, progressCallback=None, wait: bool = False,
                 timeout: float | None = None, processEvents=None) -> TrainingRun:
        """Follow a remote training again after a dropped connection (``runner``: a RemoteEngineRunner); its
        events are replayed from the start, so progress and curves are whole again."""
        stopFile = json.loads(Path(jobFile).read_text(encoding="utf-8")).get("stop_file")
        job = runner.attachJob(jobFile, f"training of {Path(modelDir).name}", stopFile=stopFile)
        return self._start(job, Path(modelDir), scene, progressCallback, wait, timeout, processEvents)

    def _start(self, job, modelDir, scene, progressCallback, wait, timeout, processEvents) -> TrainingRun:
        run = TrainingRun(job, modelDir, TrainingCurves(scene, f"DeepMed {modelDir.name}") if scene else None)
        if progressCallback is not None:
            run.eventReceived.connect(progressCallback)
        TrainLogic.activeRun = run
        job.start()
        if wait:
            run.wait(timeout, processEvents)
        return run

    def choicesJob(self) -> BackgroundJob:
        """``deepmed list choices --json`` in a worker: the applications the engine trains ({name: description},
        plug-ins included, the default first) and per application its networks and losses (the engine's registry
        is the one source of truth); read with ``job.outputJson()``."""
        return self.runner.start("engine choices", "list", "choices", "--json")

def startingModel(model, application: str | None):
    """The library model a training starts from; made for ``application`` or trainable as one (the card says; None: the
    engine's default application, which the engine checks)."""
    found = ModelLibrary.findModel(model)  # one line naming the installed models when nothing matches
    if application and not found.card.accepts_training_of(application):
        raise TrainError(_("{model} is a {made} model; it cannot start a {application} training").format(
            model=found.id, made=found.application, application=application))
    return found


def trainingConfig(application: str | None = None, epochs: int | None = None, device: str = "auto",
                   settings: dict | None = None, timeLimitSeconds: float = 0) -> dict:
    """The typed configuration the worker reads (``deepmed train --config``): dotted keys become nested.
    ``application``: None leaves the engine's default."""
    flat = {"app": application, "training.device": device} if application else {"training.device": device}
    if epochs:
        flat["training.epochs"] = int(epochs)
    if timeLimitSeconds:
        flat["training.time_limit"] = float(timeLimitSeconds)
    flat.update(settings or {})
    config: dict = {}
    for key, value in flat.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise TrainError(_("{key}: '{part}' is a value, not a section").format(key=key, part=part))
            node = child
        node[leaf] = value
    return config


def parseSettingValue(text: str):
    """A typed value from the panel's text, with YAML 1.2 core scalars: 1e-4 and 0.00005 are numbers,
    true/false booleans, null None, [8,16,32] a list; anything else stays a string."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~", ""):
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return float(text) if any(c in lowered for c in ".e") else int(text, 0)
    except ValueError:
        return text
