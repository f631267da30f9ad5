"""DeepMed Data: assemble a training dataset from scene nodes or from a folder, check it and export it.

The module file stays thin; the panel lives in DeepMedDataLib/DataPanel.py and the work in
DeepMedDataLib/DataLogic.py (Qt-free, scriptable from the Python console).
"""

from __future__ import annotations

import os
from typing import Annotated

import slicer
from DeepMedDataLib.DataLogic import DataLogic, SceneCase
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper  # noqa: F401
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)

from DeepMedLib.ModuleWidget import DeepMedModuleWidget


class DeepMedData(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepMed Data")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation"), "DeepMed"]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerDeepMed developers"]
        self.parent.helpText = _("Assemble a dataset for DeepMed Train: add cases from the scene (volumes as "
                                "channels, a segmentation or label map as label) or scan a folder, check every "
                                "case, split into train/validation/test and export as dataset.json + NIfTI.")
        self.parent.acknowledgementText = _("Built on PyTorch, MONAI and SimpleITK; successor of NiftyNet and DLTK.")


@parameterNodeWrapper
class DeepMedDataParameterNode:
    """The panel's settings, saved with the scene (the cases themselves are scene nodes chosen in the panel)."""

    channelNames: str = "CT"
    imagePatterns: str = ""
    labelPattern: str = ""
    trainPercent: Annotated[int, WithinRange(0, 100)] = 70
    validationPercent: Annotated[int, WithinRange(0, 100)] = 15
    testPercent: Annotated[int, WithinRange(0, 100)] = 15
    datasetName: str = "dataset"


class DeepMedDataWidget(DeepMedModuleWidget):
    uiFile = "UI/DeepMedData.ui"
    parameterNodeClass = DeepMedDataParameterNode

    @property
    def panelClass(self):
        from DeepMedDataLib.DataPanel import DataPanel

        return DataPanel

    @property
    def logicClass(self):
        return DeepMedDataLogic


class DeepMedDataLogic(ScriptedLoadableModuleLogic, DataLogic):
    """``DeepMedDataLogic().exportSceneDataset([SceneCase("p1", [ct], seg)], "/data/liver", "liver", ["CT"])``."""

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        DataLogic.__init__(self, runner)


class DeepMedDataTest(ScriptedLoadableModuleTest):
    """Inside Slicer: exports synthetic scene cases and checks the written dataset."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        from DeepMedLib.SelfTestData import runEach

        runEach(self, self.test_export_scene_cases)

    def test_export_scene_cases(self):
        import json
        import tempfile

        from DeepMedLib import Dependencies, SceneBridge
        from DeepMedLib.SelfTestData import syntheticArrays, syntheticCase, syntheticImage

        cases = []
        for index in range(3):
            volume, _ = syntheticCase(slicer.mrmlScene, seed=index, name=f"MR {index}")
            _, label = syntheticArrays(index)
            segmentation = SceneBridge.addSegmentationFromLabelImage(
                syntheticImage(label), volume, [{"value": 1, "name": "box", "color": [200, 50, 50]},
                                                {"value": 2, "name": "core", "color": [50, 50, 200]}], f"seg {index}")
            cases.append(SceneCase(f"case{index}", [volume], segmentation))
        with tempfile.TemporaryDirectory() as folder:
            manifest = DeepMedDataLogic().exportSceneDataset(cases, os.path.join(folder, "boxes"), "boxes", ["MR"])
            with open(manifest) as handle:
                data = json.load(handle)
            self.assertEqual(data["labels"], {"background": 0, "box": 1, "core": 2})
            self.assertEqual(len(data["training"]), 3)
            missing = Dependencies.describeMissing()
            if missing:  # e.g. the Extensions build machines: no torch there
                self.delayDisplay(f"Skipped the dataset check (needs the engine's packages): {missing}")
                return
            report = DeepMedDataLogic().check(manifest).wait(timeout=300, processEvents=slicer.app.processEvents)
            self.assertTrue(report["ok"], report["problems"])
        self.delayDisplay("Test passed")
