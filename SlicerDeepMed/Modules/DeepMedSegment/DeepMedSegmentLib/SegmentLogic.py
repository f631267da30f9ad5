"""Segment / predict scene volumes with a model, in a background process (Qt-free, scriptable).

    logic = SegmentLogic()
    node = logic.run(model="liver-ct", inputVolumes=[ct], device="cpu", wait=True)

Inputs travel to the worker as NRRD files in a temporary folder; the result comes back the same way and
is added to the scene only when the worker succeeded (Cancel or an error leaves the scene as it was).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import SimpleITK as sitk

from DeepMedLib import ModelLibrary, Outputs, SceneBridge
from DeepMedLib.BackgroundJob import BackgroundJob
from DeepMedLib.EngineCommand import EngineRunner
from DeepMedLib.Signal import Signal


class SegmentError(ValueError):
    pass


class SegmentRun:
    """One running inference: ``job`` (BackgroundJob), ``finished(outputNode or None, JobResult)``."""

    def __init__(self, job: BackgroundJob, model, inputVolumes, outputNode, options: dict, workDir: Path):
        self.job, self.model, self.inputVolumes = job, model, inputVolumes
        self.outputNode, self.options, self.workDir = outputNode, options, workDir
        self.finished = Signal("object", "JobResult")
        self.result = None
        job.finished.connect(self._onJobFinished)

    def poll(self) -> bool:
        return self.job.poll()

    def cancel(self) -> None:
        self.job.cancel()

    def wait(self, timeout=None, processEvents=None):
        self.job.wait(timeout, processEvents)
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
        image = sitk.ReadImage(str(self.workDir / "output.nrrd"))
        reference = self.inputVolumes[0]
        return Outputs.addOutput(self.model.output_kind, image, reference, self.model.card,
                                 self.options["outputName"], self.outputNode, self.options["showIn3D"])


class SegmentLogic:
    """Runs models on volume nodes. Several inferences may run at once, and while a training runs.

    ``runner``: makes the worker processes (``EngineRunner``); tests may pass another."""

    def __init__(self, runner: EngineRunner | None = None):
        self.runner = runner or EngineRunner()
        self.runs: list[SegmentRun] = []

    def run(self, model, inputVolumes, device: str = "auto", outputNode=None, tta: bool = False,
            keepLargest: bool = False, showIn3D: bool = False, outputName: str | None = None, wait: bool = False,
            timeout: float | None = None, processEvents=None, folds: list[int] | None = None):
        """Start an inference; with ``wait=True`` block and return the output node (raise on failure).
        ``folds``: of a cross-validation ensemble, the folds to run (default: all, averaged)."""
        model = ModelLibrary.findModel(model)
        inputVolumes = list(inputVolumes)
        self._checkInputs(model, inputVolumes, outputNode)
        workDir = Path(tempfile.mkdtemp(prefix="deepmed-segment-"))
        try:
            inputFiles = []
            for index, volume in enumerate(inputVolumes):
                path = workDir / f"input_{index:04d}.nrrd"
                sitk.WriteImage(SceneBridge.imageFromVolumeNode(volume), str(path), useCompression=False)
                inputFiles.append(path)
        except Exception:
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        arguments = ["infer", "--model", model.path, *inputFiles, "-o", workDir / "output.nrrd",
                     "--device", device, "--progress", "jsonl"]
        arguments += ["--tta"] if tta else []
        arguments += ["--keep-largest"] if keepLargest else []
        arguments += ["--folds", ",".join(str(f) for f in folds)] if folds else []
        job = self.runner.job(f"inference with {model.id}", *arguments)
        options = {"showIn3D": showIn3D, "outputName": outputName or f"{inputVolumes[0].GetName()} {model.title}"}
        segmentRun = SegmentRun(job, model, inputVolumes, outputNode, options, workDir)
        self.runs.append(segmentRun)
        segmentRun.finished.connect(lambda node, result: self.runs.remove(segmentRun))
        job.start()
        if not wait:
            return segmentRun
        node = segmentRun.wait(timeout, processEvents)
        if node is None:
            raise SegmentError(segmentRun.result.errorMessage or f"inference {segmentRun.result.status}")
        return node

    @staticmethod
    def _checkInputs(model, inputVolumes, outputNode) -> None:
        expected = model.input_names
        if len(inputVolumes) != len(expected) or any(v is None for v in inputVolumes):
            raise SegmentError(f"model {model.id} expects {len(expected)} input volume(s) ({', '.join(expected)}), "
                               f"got {len([v for v in inputVolumes if v is not None])}")
        if outputNode is not None:
            wanted = Outputs.nodeClass(model.output_kind)
            if not outputNode.IsA(wanted) or outputNode.IsA("vtkMRMLLabelMapVolumeNode"):
                raise SegmentError(f"output node {outputNode.GetName()}: a {model.application} model writes a "
                                   f"{wanted[7:-4]} node, got a {outputNode.GetClassName()[7:-4]} node")
