"""DeepMed Review (module DeepMedReview): review, correct, improve — the annotation loop without a server.

Rank a dataset's pool of unlabelled cases by the model's uncertainty, load one with its prediction as an
editable segmentation and its uncertainty as an overlay, correct it in the Segment Editor, Accept it into the
dataset (or Skip), and Improve the model in the background: the new version is promoted in the library only
when it is not worse on fixed held-out cases, and the Run panel then uses it.

The module file stays thin; the panel lives in DeepMedReviewLib/ReviewPanel.py and the work in
DeepMedReviewLib/ReviewLogic.py (Qt-free, runs the engine in background processes).
"""

from __future__ import annotations

from typing import Annotated

import slicer
from DeepMedReviewLib.ReviewLogic import ReviewLogic
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)

from DeepMedLib.ModuleWidget import DeepMedModuleWidget


class DeepMedReview(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepMed Review")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation"), "DeepMed"]
        self.parent.dependencies = ["DeepMedData"]
        self.parent.contributors = ["SlicerDeepMed developers"]
        self.parent.helpText = _("Review, correct, improve. Rank the unlabelled cases of a dataset (its pool) by "
                                 "how unsure the model is, load one with the model's prediction as an editable "
                                 "segmentation and its uncertainty as an overlay, correct it in the Segment Editor "
                                 "and Accept it into the dataset. Improve model fine-tunes the model on the grown "
                                 "dataset in the background and promotes the new version only when it is not worse "
                                 "on held-out cases; the Run panel then uses it.")
        self.parent.acknowledgementText = _("Built on PyTorch, MONAI and SimpleITK; successor of NiftyNet and DLTK.")


@parameterNodeWrapper
class DeepMedReviewParameterNode:
    """The panel's state, saved with the scene. ``manifestPath``, ``reviewFolder`` and ``model`` are kept by the
    panel (Slicer has no str connector for ctkPathLineEdit; the models come from the library)."""

    manifestPath: str = ""
    reviewFolder: str = ""
    model: str = ""
    strategy: Annotated[str, Choice(["uncertainty", "random", "first"])] = "uncertainty"
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    improveMinutes: Annotated[float, WithinRange(0.1, 1440.0)] = 5.0
    improveTolerance: Annotated[float, WithinRange(0.0, 1.0)] = 0.005  # deepmed improve's default


class DeepMedReviewWidget(DeepMedModuleWidget):
    uiFile = "UI/DeepMedReview.ui"
    parameterNodeClass = DeepMedReviewParameterNode

    @property
    def panelClass(self):
        from DeepMedReviewLib.ReviewPanel import ReviewPanel

        return ReviewPanel

    @property
    def logicClass(self):
        return DeepMedReviewLogic


class DeepMedReviewLogic(ScriptedLoadableModuleLogic, ReviewLogic):
    """``DeepMedReviewLogic().rank("dataset.json", "liver", "review", wait=True)``; see ReviewLogic."""

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        ReviewLogic.__init__(self, runner)


class DeepMedReviewTest(ScriptedLoadableModuleTest):
    """Inside Slicer: a ranked case loads on its image's grid, and an untouched prediction counts as uncorrected."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        from DeepMedLib.SelfTestData import runEach

        runEach(self, self.test_ranked_case_loads_on_its_grid)

    def test_ranked_case_loads_on_its_grid(self):
        import json
        import tempfile
        from pathlib import Path

        import numpy as np
        import SimpleITK as sitk
        from DeepMedReviewLib.Ranking import readRanking

        from DeepMedLib.SelfTestData import syntheticArrays, syntheticImage

        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            image, label = syntheticArrays(5)
            sitk.WriteImage(syntheticImage(image), str(folder / "u1.nii.gz"))
            sitk.WriteImage(syntheticImage(image), str(folder / "t1.nii.gz"))
            sitk.WriteImage(syntheticImage(label), str(folder / "t1_seg.nii.gz"))
            (folder / "review").mkdir()
            sitk.WriteImage(syntheticImage(label), str(folder / "review" / "u1_label.nii.gz"))
            uncertainty = syntheticImage((label > 0).astype(np.float32) * 0.5)
            sitk.WriteImage(uncertainty, str(folder / "review" / "u1_unc.nii.gz"))
            (folder / "review" / "ranking.csv").write_text(
                "rank,case,score,prediction,uncertainty,model,model_version\n1,u1,0.5,u1_label.nii.gz,u1_unc.nii.gz,boxes,1\n")
            manifest = {"name": "boxes", "channel_names": {"0": "MR"}, "labels": {"background": 0, "box": 1, "core": 2},
                        "training": [{"id": "t1", "image": "t1.nii.gz", "label": "t1_seg.nii.gz"}],
                        "pool": [{"id": "u1", "image": "u1.nii.gz"}]}
            (folder / "dataset.json").write_text(json.dumps(manifest))
            labels = [{"value": 1, "name": "box", "color": [200, 50, 50]},
                      {"value": 2, "name": "core", "color": [50, 50, 200]}]
            ranked = readRanking(folder / "review")[0]
            loaded = DeepMedReviewLogic().loadCase(folder / "dataset.json", ranked, slicer.mrmlScene, labels)
            self.assertEqual(slicer.util.arrayFromVolume(loaded.volume).shape, label.shape)
            self.assertIsNotNone(loaded.uncertainty)
            self.assertFalse(loaded.correctedByHand())
        self.delayDisplay("Test passed: the ranked case, its prediction and its uncertainty share one grid")
