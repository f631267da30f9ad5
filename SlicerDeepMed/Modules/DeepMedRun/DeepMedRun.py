"""DeepMed Run (module DeepMedRun): run a trained or installed model on scene volumes.

The module file stays thin; the panel lives in DeepMedRunLib/RunPanel.py and the work in
DeepMedRunLib/RunLogic.py (Qt-free, runs the engine in a background process).
"""

from __future__ import annotations

from typing import Annotated

import slicer
from DeepMedRunLib.RunLogic import RunLogic
from slicer import vtkMRMLNode, vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper  # noqa: F401
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)

from DeepMedLib.ModuleWidget import DeepMedModuleWidget


class DeepMedRun(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepMed Run")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation"), "DeepMed"]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerDeepMed developers"]
        self.parent.helpText = _("Run a deep learning model from your model library: segment, predict, classify, "
                                "reconstruct or generate. Choose the model, what to ask it for (its modes) and "
                                "its inputs, and press the button. The result lands in the scene as the model's "
                                "card says (segmentation, volume, table, sequence). The model runs in a "
                                "background process; Slicer stays responsive.")
        self.parent.acknowledgementText = _("Built on PyTorch, MONAI and SimpleITK; successor of NiftyNet and DLTK.")


@parameterNodeWrapper
class DeepMedRunParameterNode:
    """The panel's state, saved with the scene. ``model``, ``inputVolumes`` and ``outputNode`` are kept by the
    panel (its selectors follow the chosen model's card); the options are bound in the .ui."""

    model: str = ""
    inputVolumes: list[vtkMRMLScalarVolumeNode]  # the chosen mode's volumes (case A's channels, then case B's)
    outputNode: vtkMRMLNode  # the node to replace, None: a new one (its class follows the mode's output kind)
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    testTimeFlips: bool = False
    keepLargest: bool = False
    showIn3D: bool = False


class DeepMedRunWidget(DeepMedModuleWidget):
    uiFile = "UI/DeepMedRun.ui"
    parameterNodeClass = DeepMedRunParameterNode

    @property
    def panelClass(self):
        from DeepMedRunLib.RunPanel import RunPanel

        return RunPanel

    @property
    def logicClass(self):
        return DeepMedRunLogic


class DeepMedRunLogic(ScriptedLoadableModuleLogic, RunLogic):
    """``DeepMedRunLogic().run(model="my-model", inputVolumes=[ct], device="cpu", wait=True)``."""

    #: the module's name until version 0.1 (scenes saved then hold its parameter node under this name)
    formerModuleName = "DeepMedSegment"

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        RunLogic.__init__(self, runner)

    def getParameterNode(self):
        """The module's parameter node; one saved by the module's former name is adopted (old scenes)."""
        scene = slicer.mrmlScene
        if scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode") is None:
            former = scene.GetSingletonNode(self.formerModuleName, "vtkMRMLScriptedModuleNode")
            if former is not None:
                former.SetSingletonTag(self.moduleName)
                former.SetAttribute("ModuleName", self.moduleName)
        return ScriptedLoadableModuleLogic.getParameterNode(self)


class DeepMedRunTest(ScriptedLoadableModuleTest):
    """Inside Slicer: trains a tiny model on a synthetic volume, segments it, checks the result's geometry."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        from DeepMedLib.SelfTestData import runEach

        runEach(self, self.test_result_lands_on_the_input_grid_without_torch, self.test_segment_synthetic_volume)

    def test_result_lands_on_the_input_grid_without_torch(self):
        """The scene bridge (a label image back as a named segmentation on the input's grid) needs no torch."""
        from DeepMedLib import SceneBridge
        from DeepMedLib.SelfTestData import syntheticCase, syntheticImage

        volume, truth = syntheticCase(slicer.mrmlScene, seed=3)
        labels = [{"value": 1, "name": "box", "color": [200, 50, 50]},
                  {"value": 2, "name": "core", "color": [50, 50, 200]}]
        segmentation = SceneBridge.addSegmentationFromLabelImage(syntheticImage(truth), volume, labels, "self-test")
        self.assertEqual(SceneBridge.segmentNames(segmentation), ["box", "core"])
        import SimpleITK as sitk

        back, _ = SceneBridge.labelImageFromSegmentation(segmentation, volume, {"box": 1, "core": 2})
        self.assertTrue((sitk.GetArrayFromImage(back) == truth).all())

    def test_segment_synthetic_volume(self):
        import tempfile

        import numpy as np

        from DeepMedLib import SceneBridge
        from DeepMedLib.SelfTestData import skipWithoutEngine, syntheticCase, trainTinyModel

        skipWithoutEngine(self, "segmentation test")
        with tempfile.TemporaryDirectory() as folder:
            self.delayDisplay("Training a tiny model on synthetic boxes (under a minute on CPU)")
            modelDir = trainTinyModel(folder, processEvents=slicer.app.processEvents)
            volume, truth = syntheticCase(slicer.mrmlScene, seed=7)
            self.delayDisplay("Segmenting")
            segmentation = DeepMedRunLogic().run(model=str(modelDir), inputVolumes=[volume], device="cpu",
                                                     wait=True, processEvents=slicer.app.processEvents)
            self.assertEqual(SceneBridge.segmentNames(segmentation), ["box", "core"])
            labelImage, _ = SceneBridge.labelImageFromSegmentation(segmentation, volume, {"box": 1, "core": 2})
            import SimpleITK as sitk

            predicted = sitk.GetArrayFromImage(labelImage) > 0
            self.assertEqual(predicted.shape, truth.shape)
            dice = 2 * np.logical_and(predicted, truth > 0).sum() / (predicted.sum() + (truth > 0).sum())
            self.assertGreater(dice, 0.5)
        self.delayDisplay(f"Test passed: foreground Dice {dice:.2f}")
