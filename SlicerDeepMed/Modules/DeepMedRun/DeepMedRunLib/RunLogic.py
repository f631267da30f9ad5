"""Segment / predict scene volumes with a model, in a background process (Qt-free, scriptable).

    logic = RunLogic()
    node = logic.run(model="liver-ct", inputVolumes=[ct], device="cpu", wait=True)

Inputs travel to the worker as NRRD files in a temporary folder; the result comes back the same way and
is added to the scene only when the worker succeeded (Cancel or an error leaves the scene as it was).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import SimpleITK as sitk
from slicer.i18n import tr as _

from deepmed.errors import DeepMedError
from deepmed.model.card import check_inputs
from DeepMedLib import InputFrames, ModelLibrary, Outputs
from DeepMedLib.BackgroundJob import BackgroundJob
from DeepMedLib.EngineCommand import EngineRunner
from DeepMedLib.JobHandle import JobHandle
from DeepMedLib.Signal import Signal
from DeepMedRunLib.InferenceRequest import InferenceRequest


class RunError(ValueError):
    pass


class InferenceRun(JobHandle):
    """One running inference: ``job`` (BackgroundJob), ``finished(outputNode or None, JobResult)``; ``wait()``
    gives the output node (None when it failed or was cancelled)."""

    def __init__(self, job: BackgroundJob, model, inputVolumes, outputNode, options: dict, workDir: Path):
        self.model, self.inputVolumes = model, inputVolumes
        self.outputNode, self.options, self.workDir = outputNode, options, workDir
        self.finished = Signal("object", "JobResult")
        self.result = None
        super().__init__(job)

    def waitValue(self):
        return self.outputNode if self.result is not None and self.result.succeeded else None

    def _onJobFinished(self, result) -> None:
        self.result = result
        try:
            if result.succeeded:
                self.outputNode = self._addOutput()
            else:
                self.outputNode = None
        except Exception as exc:  # a broken output file must not take the panel down
            result.status, result.errorMessage = "failed", f"cannot load the result: {exc}"
            self.outputNode = None
        finally:
            shutil.rmtree(self.workDir, ignore_errors=True)
        self.finished.emit(self.outputNode, result)

    def _addOutput(self):
        kind = self.options["outputKind"]
        result = Outputs.readOutput(kind, self.workDir / Outputs.outputFileName(kind))
        reference = self.inputVolumes[0] if self.inputVolumes else None
        return Outputs.addOutput(kind, result, reference, self.model.card.label_dicts(), self.options["outputName"],
                                 self.outputNode, self.options["showIn3D"])


class RunLogic:
    """Runs models on volume nodes. Several inferences may run at once, and while a training runs.

    ``runner``: makes the worker processes (``EngineRunner``); tests may pass another."""

    def __init__(self, runner: EngineRunner | None = None):
        self.runner = runner or EngineRunner()
        self.runs: list[InferenceRun] = []

    def run(self, model, inputVolumes=(), device: str = "auto", outputNode=None, tta: bool = False,
            keepLargest: bool = False, showIn3D: bool = False, outputName: str | None = None, wait: bool = False,
            timeout: float | None = None, processEvents=None, folds: list[int] | None = None,
            mode: str | None = None, condition: list[float] | None = None, steps: int | None = None,
            count: int | None = None, seed: int | None = None, runner=None):
        """Start an inference; with ``wait=True`` block and return the output node (raise on failure).
        ``folds``: of a cross-validation ensemble, the folds to run (default: all, averaged).
        ``mode``: one of the card's modes (default: its first); a ``pair`` mode takes two cases' volumes one
        after the other, a ``conditions`` mode no volume but ``condition`` values; ``steps``/``count``/``seed``
        go to the model (interpolation steps, samples, random seed). ``runner``: where the worker runs (default
        this logic's; a RemoteEngineRunner runs it on a remote machine)."""
        model = ModelLibrary.findModel(model)
        try:
            chosen = model.mode(mode)
        except DeepMedError as error:
            raise RunError(str(error)) from None
        inputVolumes = list(inputVolumes)
        self._checkInputs(model, chosen, inputVolumes, outputNode, condition)
        workDir = Path(tempfile.mkdtemp(prefix="deepmed-segment-"))
        try:
            # each case's channels in its first channel's frame (others under another transform are resampled)
            perCase = max(len(model.input_names), 1)
            images = [image for start in range(0, len(inputVolumes), perCase)
                      for image in InputFrames.inputImages(inputVolumes[start:start + perCase])]
            inputFiles = []
            for index, image in enumerate(images):
                path = workDir / f"input_{index:04d}.nrrd"
                sitk.WriteImage(image, str(path), useCompression=False)
                inputFiles.append(path)
        except Exception:
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        kind = chosen.output_kind
        request = InferenceRequest(
            model=Path(model.path), inputs=tuple(inputFiles), output=workDir / Outputs.outputFileName(kind),
            device=device, mode=chosen.name if mode is not None else None,
            condition=tuple(condition) if condition is not None else None, steps=steps, count=count, seed=seed,
            tta=tta, keepLargest=keepLargest, folds=tuple(folds or ()))
        job = (runner or self.runner).job(f"inference with {model.id}", *request.asArgs())
        first = inputVolumes[0].GetName() if inputVolumes else chosen.name
        defaultName = f"{first} {model.title}"
        options = {"showIn3D": showIn3D, "outputName": outputName or defaultName, "outputKind": kind}
        segmentRun = InferenceRun(job, model, inputVolumes, outputNode, options, workDir)
        self.runs.append(segmentRun)
        segmentRun.finished.connect(lambda node, result: self.runs.remove(segmentRun))
        job.start()
        if not wait:
            return segmentRun
        node = segmentRun.wait(timeout, processEvents)
        if node is None:
            raise RunError(segmentRun.result.errorMessage or f"inference {segmentRun.result.status}")
        return node

    @staticmethod
    def _checkInputs(model, mode, inputVolumes, outputNode, condition) -> None:
        """The engine's own check (one rule with the Predictor), before any file is written."""
        if any(volume is None for volume in inputVolumes):
            raise RunError(_("model {model}: an input volume is not chosen").format(model=model.id))
        named = f"model {model.id}" + (f" ({mode.name})" if len(model.modes) > 1 else "")
        try:
            check_inputs(model.card, mode, len(inputVolumes), condition, named)
        except DeepMedError as error:
            raise RunError(str(error)) from None
        if outputNode is not None:
            wanted = Outputs.nodeClass(mode.output_kind)
            if not outputNode.IsA(wanted) or outputNode.IsA("vtkMRMLLabelMapVolumeNode"):
                raise RunError(_("output node {node}: a {application} model writes a {wanted} node, got a {got} "
                                 "node").format(node=outputNode.GetName(), application=model.application,
                                                wanted=wanted[7:-4], got=outputNode.GetClassName()[7:-4]))
