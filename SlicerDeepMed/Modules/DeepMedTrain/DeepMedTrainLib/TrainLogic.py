"""Train a model in a background process; one training at a time (inference may still run).

    logic = TrainLogic()
    run = logic.train("dataset.json", name="liver", epochs=50, device="cuda", progressCallback=print)
    run.wait()  # or poll() from a QTimer

Progress arrives as the engine's JSON-lines events; when a scene is given, the loss and validation
curves fill MRML tables shown in a plot chart. A finished model goes into the model library
(``ModelLibrary.changed`` fires) and appears in the Segment panel.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from DeepMedLib import ModelLibrary
from DeepMedLib.BackgroundJob import BackgroundJob
from DeepMedLib.EngineCommand import engineCommand, engineEnvironment
from DeepMedLib.Signal import Signal
from DeepMedLib.TrainingCurves import TrainingCurves


class TrainError(ValueError):
    pass


class TrainingRun:
    """A running training: ``progress`` fields for the panel, ``eventReceived``/``finished`` signals."""

    def __init__(self, job: BackgroundJob, modelDir: Path, curves: TrainingCurves | None):
        self.job, self.modelDir, self.curves = job, modelDir, curves
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
        job.eventReceived.connect(self._onEvent)
        job.finished.connect(self._onFinished)

    def poll(self) -> bool:
        return self.job.poll()

    def stop(self) -> None:
        """Finish the current step, write a checkpoint (Resume continues from it), end."""
        self.job.requestStop()

    def cancel(self) -> None:
        self.job.cancel()

    def wait(self, timeout=None, processEvents=None):
        return self.job.wait(timeout, processEvents)

    def _onEvent(self, event: dict) -> None:
        kind = event["event"]
        if kind == "started":
            self.epochs, self.iterationsPerEpoch = event["epochs"], event["iterations_per_epoch"]
            self.startEpoch = event.get("start_epoch", 0)
            self.fraction = self.startEpoch / max(self.epochs, 1)
            self.status = f"training on {event['device']}"
        elif kind == "iteration":
            done = event["epoch"] * self.iterationsPerEpoch + event["iteration"] + 1
            self.fraction = done / max(self.epochs * self.iterationsPerEpoch, 1)
            self.etaSeconds, self.lastLoss = event.get("eta_s"), event["loss"]
            self.status = f"epoch {event['epoch'] + 1}/{self.epochs}"
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
            self.status = f"stopped at epoch {event['epoch'] + 1}; Resume continues from the checkpoint"
        self.eventReceived.emit(event)

    def _onFinished(self, result) -> None:
        if self.job.stopFile is not None:
            shutil.rmtree(self.job.stopFile.parent, ignore_errors=True)  # the run's private stop-file folder
        if not result.succeeded and self.curves is not None and not self.curves.values(self.curves.lossTable):
            self.curves.removeFromScene()  # nothing was plotted: leave the scene as it was
            self.curves = None
        if result.succeeded:
            ModelLibrary.changed.emit(str(self.modelDir))
        elif result.status == "failed":
            self.status = f"failed: {result.errorMessage}"
        elif result.status == "cancelled":
            self.status = "cancelled"
        self.finished.emit(result)

    def summary(self) -> str:
        """One line for the panel: epoch, loss, key metric, ETA."""
        parts = [self.status]
        if self.lastLoss is not None:
            parts.append(f"loss {self.lastLoss:.4f}")
        if self.lastMetrics:
            key = self.lastMetrics["key"]
            parts.append(f"{key} {self.lastMetrics[key]:.3f}")
        if self.etaSeconds:
            minutes, seconds = divmod(int(self.etaSeconds), 60)
            parts.append(f"ETA {minutes}:{seconds:02d}")
        return " | ".join(parts)


class TrainLogic:
    """Starts trainings. Only one runs at a time, across every TrainLogic in this Slicer session."""

    activeRun: TrainingRun | None = None

    def train(self, dataset, name: str | None = None, outputDir=None, application: str = "segmentation",
              epochs: int | None = None, device: str = "auto", settings: dict | None = None, resume: bool = False,
              scene=None, progressCallback=None, wait: bool = False, timeout: float | None = None,
              processEvents=None) -> TrainingRun:
        """Start training on a dataset manifest; the model goes to ``outputDir`` or a new library folder.

        ``settings``: engine settings, e.g. ``{"training.batch_size": 2, "network.name": "segresnet"}``.
        ``progressCallback(event)`` gets every JSON-lines event. ``resume`` continues ``outputDir``.
        """
        if TrainLogic.activeRun is not None and TrainLogic.activeRun.job.running:
            raise TrainError(f"a training is already running ({TrainLogic.activeRun.modelDir}); stop it first")
        dataset = Path(dataset)
        if not dataset.exists():
            raise TrainError(f"{dataset}: dataset not found")
        if resume:
            if outputDir is None or not (Path(outputDir) / "checkpoints" / "last").is_dir():
                raise TrainError(f"{outputDir}: nothing to resume (no checkpoints/last)")
            modelDir = Path(outputDir)
        else:
            modelDir = Path(outputDir) if outputDir else ModelLibrary.new_model_dir(name or dataset.stem)
            if modelDir.exists() and any(modelDir.iterdir()):
                raise TrainError(f"{modelDir}: already exists and is not empty; choose another name (or Resume)")
        stopFile = Path(tempfile.mkdtemp(prefix="deepmed-train-")) / "stop"
        arguments = ["train", "--dataset", dataset, "--out", modelDir, "--app", application, "--device", device,
                     "--progress", "jsonl", "--stop-file", stopFile]
        arguments += ["--epochs", int(epochs)] if epochs else []
        arguments += ["--resume"] if resume else []
        for key, value in (settings or {}).items():
            arguments += ["--set", f"{key}={_settingText(value)}"]
        job = BackgroundJob(engineCommand(*arguments), env=engineEnvironment(), stopFile=stopFile,
                            name=f"training of {modelDir.name}")
        run = TrainingRun(job, modelDir, TrainingCurves(scene, f"DeepMed {modelDir.name}") if scene else None)
        if progressCallback is not None:
            run.eventReceived.connect(progressCallback)
        TrainLogic.activeRun = run
        job.start()
        if wait:
            run.wait(timeout, processEvents)
        return run


def _settingText(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)
