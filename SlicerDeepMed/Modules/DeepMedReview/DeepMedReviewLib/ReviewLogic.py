"""Review, correct, improve (Qt-free, scriptable): the annotation loop of the Review panel.

    logic = ReviewLogic()
    ranking = logic.rank("data/dataset.json", "liver", "data/review", wait=True)        # deepmed review
    loaded = logic.loadCase("data/dataset.json", ranking[0], scene)                     # image, prediction, uncertainty
    ...  # correct loaded.segmentation in the Segment Editor
    logic.accept("data/dataset.json", loaded)                                           # the label joins the dataset
    comparison = logic.improve("data/dataset.json", "liver", seconds=300, wait=True)    # deepmed improve

The engine runs in background processes (``deepmed review`` / ``deepmed improve``); this process never
imports torch. Loaded cases lie on the case image's exact grid (the prediction and the uncertainty map are
checked against it, never resampled).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepmed.data.manifest import Dataset
from DeepMedLib import ModelLibrary, SceneBridge
from DeepMedLib.BackgroundJob import BackgroundJob
from DeepMedLib.EngineCommand import EngineRunner
from DeepMedLib.JobHandle import JobHandle
from DeepMedReviewLib.Ranking import Comparison, RankedCase, RankingError, readComparison, readRanking

UNCERTAINTY_COLORS = "vtkMRMLColorTableNodeRainbow"  # a colour map from the default colour nodes
UNCERTAINTY_OPACITY = 0.4


class ReviewError(ValueError):
    pass


@dataclass
class LoadedCase:
    """A ranked case in the scene: its image, the prediction as an editable segmentation, the uncertainty."""

    ranked: RankedCase
    volume: object                # vtkMRMLScalarVolumeNode: the case's first channel (the reference grid)
    segmentation: object          # vtkMRMLSegmentationNode: the prediction, to be corrected
    uncertainty: object | None    # vtkMRMLScalarVolumeNode or None
    proposed: np.ndarray          # the predicted label array (K, J, I), to tell whether it was corrected
    nameToValue: dict             # segment name -> label value (the model card's labels)
    otherChannels: list = field(default_factory=list)  # the case's other channels, each on its own file's grid

    @property
    def nodes(self) -> list:
        return [self.segmentation, self.uncertainty, self.volume, *self.otherChannels]

    def correctedByHand(self) -> bool:
        """Whether the segmentation now differs from the model's prediction."""
        current, _ = SceneBridge.labelImageFromSegmentation(self.segmentation, self.volume, self.nameToValue)
        return not np.array_equal(sitk.GetArrayFromImage(current), self.proposed)


class _ResultRun(JobHandle):
    """A worker whose output file is read once it succeeded (``readResult``); a worker failure or an unreadable
    result fails the job with one message (``error``), and ``value`` stays None."""

    def __init__(self, job: BackgroundJob):
        self.value, self.error = None, ""
        super().__init__(job)

    def waitValue(self):
        return self.value

    def readResult(self, result):
        raise NotImplementedError

    def _onJobFinished(self, result) -> None:
        if not result.succeeded:
            self.error = result.errorMessage
            return
        try:
            self.value = self.readResult(result)
        except RankingError as error:
            result.status, result.errorMessage = "failed", str(error)
            self.error = str(error)


class RankRun(_ResultRun):
    """``deepmed review`` in the background; ``ranking`` (list of RankedCase) once it succeeded."""

    def __init__(self, job: BackgroundJob, reviewFolder: Path):
        self.reviewFolder = Path(reviewFolder)
        super().__init__(job)

    @property
    def ranking(self):
        return self.value

    def readResult(self, result):
        return readRanking(self.reviewFolder)


class ImproveRun(_ResultRun):
    """``deepmed improve`` in the background; ``comparison`` (Comparison) once it succeeded. A promoted version
    is announced (``ModelLibrary.changed``) so every panel lists it."""

    @property
    def comparison(self):
        return self.value

    def readResult(self, result):
        path = next((e["path"] for e in reversed(result.events) if e["event"] == "comparison"), None)
        if path is None:
            raise RankingError(f"{self.job.name}: the worker ended without its comparison")
        comparison = readComparison(path)
        ModelLibrary.changed.emit(str(ModelLibrary.libraryFolder()))
        return comparison


class ReviewLogic:
    """``runner``: makes the worker processes (``EngineRunner``); tests may pass another."""

    def __init__(self, runner: EngineRunner | None = None):
        self.runner = runner or EngineRunner()

    # ---- rank the pool ----------------------------------------------------------------------------
    def rank(self, manifest, model, reviewFolder, strategy: str = "uncertainty", device: str = "auto",
             wait: bool = False, timeout: float | None = None, processEvents=None):
        """Predict every pool case and rank them (``deepmed review``); with ``wait`` the ranking, else a RankRun.
        Cases already predicted by the same model version are not recomputed (the engine resumes)."""
        manifest, reviewFolder = Path(manifest), Path(reviewFolder)
        if not manifest.is_file():
            raise ReviewError(f"{manifest}: no such dataset manifest")
        job = self.runner.job(f"review of {manifest.name}", "review", manifest, "--model", self._modelId(model),
                              "-o", reviewFolder, "--strategy", strategy, "--device", device,
                              "--library", ModelLibrary.libraryFolder(), "--progress", "jsonl")
        run = RankRun(job, reviewFolder)
        job.start()
        if not wait:
            return run
        ranking = run.wait(timeout, processEvents)
        if ranking is None:
            raise ReviewError(run.error or f"review {run.job.result.status}")
        return ranking

    def readRanking(self, reviewFolder) -> list[RankedCase]:
        return readRanking(reviewFolder)

    # ---- load, correct, accept -----------------------------------------------------------------------
    def loadCase(self, manifest, ranked: RankedCase, scene, labels: list[dict] | None = None) -> LoadedCase:
        """The case's image (its first channel is the grid; other channels are loaded to look at), its prediction
        as a segmentation named and coloured as the model's card says (``labels``: ``[{value, name, color}]``;
        default: the ranking's model), and its uncertainty map as a coloured volume, all on the image's grid."""
        dataset = Dataset.load(manifest)
        case = dataset.case(ranked.case)
        if labels is None:
            labels = ModelLibrary.findModel(ranked.proposedBy or ranked.model).card.label_dicts()
        labels = [label for label in labels if int(label["value"]) != 0]
        image = sitk.ReadImage(str(case.images[0]))
        volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(ranked.case))
        segmentation = uncertainty = None
        otherChannels = []
        try:
            SceneBridge.updateVolumeNodeFromImage(volume, image)
            volume.CreateDefaultDisplayNodes()
            SceneBridge.setRobustWindowLevel(volume)
            prediction = self._readOnGrid(ranked.prediction, volume, "prediction")
            if ranked.uncertainty is not None:
                uncertaintyImage = self._readOnGrid(ranked.uncertainty, volume, "uncertainty map")
            segmentation = SceneBridge.addSegmentationFromLabelImage(prediction, volume, labels,
                                                                     f"{ranked.case} {ranked.proposedBy}")
            if ranked.uncertainty is not None:
                uncertainty = SceneBridge.addScalarVolumeFromImage(uncertaintyImage, volume,
                                                                   f"{ranked.case} uncertainty")
                self._colourOverlay(uncertainty)
            for index, path in enumerate(case.images[1:], start=1):  # to look at while correcting
                name = dataset.channel_names.get(str(index), f"channel {index}")
                channel = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode",
                                                  scene.GenerateUniqueName(f"{ranked.case} {name}"))
                otherChannels.append(channel)
                SceneBridge.updateVolumeNodeFromImage(channel, sitk.ReadImage(str(path)))
                channel.CreateDefaultDisplayNodes()
                SceneBridge.setRobustWindowLevel(channel)
        except Exception:
            for node in (uncertainty, segmentation, volume, *otherChannels):
                if node is not None:
                    scene.RemoveNode(node)
            raise
        self._show(volume, uncertainty)
        return LoadedCase(ranked, volume, segmentation, uncertainty,
                          sitk.GetArrayFromImage(prediction).astype(np.uint16),
                          {label["name"]: int(label["value"]) for label in labels}, otherChannels)

    def accept(self, manifest, loaded: LoadedCase, note: str = "") -> Path:
        """Save the (corrected) segmentation as the case's label in the dataset (atomic; an earlier label is kept)
        with its provenance: the model id@version that proposed it and whether it was corrected by hand."""
        from DeepMedDataLib.DataLogic import DataLogic

        from deepmed.data.provenance import LabelProvenance

        provenance = LabelProvenance.from_model(loaded.ranked.proposedBy, corrected_by_hand=loaded.correctedByHand(),
                                                note=note)
        return DataLogic(self.runner).acceptLabel(manifest, loaded.ranked.case, loaded.segmentation, loaded.volume,
                                                  provenance)

    @staticmethod
    def removeCase(loaded: LoadedCase) -> None:
        """Take a reviewed case's nodes out of the scene (the next case replaces it)."""
        for node in loaded.nodes:
            if node is not None and node.GetScene() is not None:
                node.GetScene().RemoveNode(node)

    # ---- improve ----------------------------------------------------------------------------------
    def improve(self, manifest, model, seconds: float, tolerance: float | None = None, device: str = "auto",
                wait: bool = False, timeout: float | None = None, processEvents=None):
        """Fine-tune ``model`` on the dataset's labelled cases for ``seconds`` (``deepmed improve``), compare old
        and new on the fixed held-out cases and promote the new version when its mean Dice is at least the old one
        minus ``tolerance`` (default: the engine's). With ``wait`` the Comparison, else an ImproveRun."""
        manifest = Path(manifest)
        if not manifest.is_file():
            raise ReviewError(f"{manifest}: no such dataset manifest")
        if seconds <= 0:
            raise ReviewError(f"improvement time: expected more than 0 seconds, got {seconds:g}")
        job = self.runner.job(f"improvement of {self._modelId(model)}", "improve", manifest, "--model",
                              self._modelId(model), "--time", f"{round(seconds)}s", "--device", device,
                              "--library", ModelLibrary.libraryFolder(), "--progress", "jsonl",
                              *(["--tolerance", f"{tolerance:g}"] if tolerance is not None else []))
        run = ImproveRun(job)
        job.start()
        if not wait:
            return run
        comparison = run.wait(timeout, processEvents)
        if comparison is None:
            raise ReviewError(run.error or f"improvement {run.job.result.status}")
        return comparison

    # ---- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _modelId(model) -> str:
        return model.id if hasattr(model, "id") else str(model)

    @staticmethod
    def _readOnGrid(path: Path, volume, what: str) -> sitk.Image:
        if not Path(path).is_file():
            raise ReviewError(f"{path}: the {what} is missing (rank the pool again)")
        image = sitk.ReadImage(str(path))
        try:
            SceneBridge.checkSameGrid(image, volume, what=f"{what} {Path(path).name}")
        except SceneBridge.SceneBridgeError as error:
            raise ReviewError(str(error)) from None
        return image

    @staticmethod
    def _colourOverlay(volume) -> None:
        display = volume.GetDisplayNode()
        colors = volume.GetScene().GetNodeByID(UNCERTAINTY_COLORS)
        if display is not None and colors is not None:
            display.SetAndObserveColorNodeID(colors.GetID())
        if display is not None:
            display.AutoWindowLevelOff()
            display.SetWindowLevelMinMax(0.0, 1.0)  # normalised entropy: 0 sure, 1 undecided

    @staticmethod
    def _show(volume, uncertainty) -> None:
        """The image with the uncertainty over it (nothing to show headless, without slice views)."""
        import slicer
        import slicer.util

        if getattr(slicer, "app", None) is None or getattr(slicer.app, "layoutManager", lambda: None)() is None:
            return
        slicer.util.setSliceViewerLayers(background=volume, foreground=uncertainty,
                                         foregroundOpacity=UNCERTAINTY_OPACITY if uncertainty else 0.0, fit=True)


__all__ = ["Comparison", "ImproveRun", "LoadedCase", "RankRun", "ReviewError", "ReviewLogic"]
