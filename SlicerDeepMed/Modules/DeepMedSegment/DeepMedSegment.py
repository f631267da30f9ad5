"""DeepMed Run (module DeepMedSegment): run a trained or installed model on scene volumes.

The module file stays thin; the panel lives in DeepMedSegmentLib/SegmentPanel.py and the work in
DeepMedSegmentLib/SegmentLogic.py (Qt-free, runs the engine in a background process).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import slicer
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper  # noqa: F401
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)

# In a developer checkout the shared DeepMedLib and the engine (deepmed) sit above this folder; an installed
# extension has them beside it.
_MODULES_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (_MODULES_DIR, os.path.dirname(_MODULES_DIR)):
    hasCode = os.path.isdir(os.path.join(_path, "DeepMedLib")) or os.path.isdir(os.path.join(_path, "deepmed"))
    if hasCode and _path not in sys.path:
        sys.path.append(_path)

from DeepMedSegmentLib.SegmentLogic import SegmentLogic  # noqa: E402

from DeepMedLib.ModuleWidget import DeepMedModuleWidget  # noqa: E402


class DeepMedSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "DeepMed Run"
        self.parent.categories = ["Segmentation", "DeepMed"]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerDeepMed developers"]
        self.parent.helpText = ("Run a deep learning model from your model library: segment, predict, classify, "
                                "reconstruct or generate. Choose the model, what to ask it for (its modes) and "
                                "its inputs, and press the button. The result lands in the scene as the model's "
                                "card says (segmentation, volume, table, sequence). The model runs in a "
                                "background process; Slicer stays responsive.")
        self.parent.acknowledgementText = "Built on PyTorch, MONAI and SimpleITK; successor of NiftyNet and DLTK."


@parameterNodeWrapper
class DeepMedSegmentParameterNode:
    """The panel's options, saved with the scene (the model and inputs are chosen in the panel)."""

    model: str = ""
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    testTimeFlips: bool = False
    keepLargest: bool = False
    showIn3D: bool = False


class DeepMedSegmentWidget(DeepMedModuleWidget):
    uiFile = "UI/DeepMedSegment.ui"
    parameterNodeClass = DeepMedSegmentParameterNode

    @property
    def panelClass(self):
        from DeepMedSegmentLib.SegmentPanel import SegmentPanel

        return SegmentPanel

    @property
    def logicClass(self):
        return DeepMedSegmentLogic


class DeepMedSegmentLogic(ScriptedLoadableModuleLogic, SegmentLogic):
    """``DeepMedSegmentLogic().run(model="my-model", inputVolumes=[ct], device="cpu", wait=True)``."""

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        SegmentLogic.__init__(self, runner)


class DeepMedSegmentTest(ScriptedLoadableModuleTest):
    """Inside Slicer: trains a tiny model on a synthetic volume, segments it, checks the result's geometry."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_result_lands_on_the_input_grid_without_torch()
        from DeepMedLib import Dependencies

        missing = Dependencies.describeMissing()
        if missing:  # e.g. the Extensions build machines: no torch there
            self.delayDisplay(f"Skipped the segmentation test (needs the engine's packages): {missing}")
            return
        self.setUp()
        self.test_segment_synthetic_volume()

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
        from DeepMedLib.SelfTestData import syntheticCase, trainTinyModel

        with tempfile.TemporaryDirectory() as folder:
            self.delayDisplay("Training a tiny model on synthetic boxes (under a minute on CPU)")
            modelDir = trainTinyModel(folder, processEvents=slicer.app.processEvents)
            volume, truth = syntheticCase(slicer.mrmlScene, seed=7)
            self.delayDisplay("Segmenting")
            segmentation = DeepMedSegmentLogic().run(model=str(modelDir), inputVolumes=[volume], device="cpu",
                                                     wait=True, processEvents=slicer.app.processEvents)
            self.assertEqual(SceneBridge.segmentNames(segmentation), ["box", "core"])
            labelImage, _ = SceneBridge.labelImageFromSegmentation(segmentation, volume, {"box": 1, "core": 2})
            import SimpleITK as sitk

            predicted = sitk.GetArrayFromImage(labelImage) > 0
            self.assertEqual(predicted.shape, truth.shape)
            dice = 2 * np.logical_and(predicted, truth > 0).sum() / (predicted.sum() + (truth > 0).sum())
            self.assertGreater(dice, 0.5)
        self.delayDisplay(f"Test passed: foreground Dice {dice:.2f}")
