"""DeepMed Train: train a model of any of the engine's applications on a dataset, in a background process.

The module file stays thin; the panel lives in DeepMedTrainLib/TrainPanel.py and the work in
DeepMedTrainLib/TrainLogic.py (Qt-free: JSON-lines progress, live curves, one training at a time).
"""

from __future__ import annotations

from typing import Annotated

import slicer
from DeepMedTrainLib.TrainLogic import TrainLogic
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)

from DeepMedLib.ModuleWidget import DeepMedModuleWidget


class DeepMedTrain(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepMed Train")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation"), "DeepMed"]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerDeepMed developers"]
        self.parent.helpText = _("Train a deep learning model on a dataset (made with DeepMed Data). Training runs "
                                "in a background process with live loss and validation curves; Stop saves a "
                                "checkpoint that Resume continues. Finished models appear in DeepMed Run.")
        self.parent.acknowledgementText = _("Built on PyTorch, MONAI and SimpleITK; successor of NiftyNet and DLTK.")


@parameterNodeWrapper
class DeepMedTrainParameterNode:
    """The panel's state, saved with the scene. ``datasetPath``, ``network`` and ``loss`` are kept by the panel
    (Slicer has no str connector for ctkPathLineEdit; the network and loss choices come from the engine)."""

    datasetPath: str = ""
    modelName: str = ""
    application: str = ""  # kept by the panel: the choices come from the engine (plug-ins included)
    network: str = "auto"  # kept by the panel: the choices come from the engine, per application
    loss: str = "auto"
    patchSize: str = "auto"
    timeBudgetMinutes: Annotated[int, WithinRange(0, 100000)] = 0
    epochs: Annotated[int, WithinRange(1, 100000)] = 50
    batchSize: Annotated[int, WithinRange(0, 512)] = 0  # 0: auto (the application plans it)
    learningRate: Annotated[float, WithinRange(0.0, 1.0)] = 0.0  # 0: auto
    augmentation: bool = True
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    extraSettings: str = ""


class DeepMedTrainWidget(DeepMedModuleWidget):
    uiFile = "UI/DeepMedTrain.ui"
    parameterNodeClass = DeepMedTrainParameterNode

    @property
    def panelClass(self):
        from DeepMedTrainLib.TrainPanel import TrainPanel

        return TrainPanel

    @property
    def logicClass(self):
        return DeepMedTrainLogic


class DeepMedTrainLogic(ScriptedLoadableModuleLogic, TrainLogic):
    """``DeepMedTrainLogic().train("dataset.json", name="liver", epochs=100, progressCallback=print)``."""

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        TrainLogic.__init__(self, runner)


class DeepMedTrainTest(ScriptedLoadableModuleTest):
    """Inside Slicer: trains a tiny model in the background and checks the curves and the library entry."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        from DeepMedLib.SelfTestData import runEach

        runEach(self, self.test_curves_and_config_without_torch, self.test_train_tiny_model)

    def test_curves_and_config_without_torch(self):
        """The scene side of training and the worker's typed configuration need no torch."""
        from DeepMedTrainLib.TrainLogic import parseSettingValue, trainingConfig

        from DeepMedLib.TrainingCurves import TrainingCurves

        curves = TrainingCurves(slicer.mrmlScene, "self-test")
        curves.addEpoch(1, 0.5)
        curves.addValidation(1, {"dice": 0.7})
        self.assertEqual(curves.values(curves.lossTable), [[1.0, 0.5]])
        curves.removeFromScene()
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode"), 0)
        config = trainingConfig(None, 5, "cpu", {"optimizer.lr": parseSettingValue("1e-4")}, 600)
        self.assertEqual(config["optimizer"]["lr"], 1e-4)
        self.assertEqual(config["training"], {"device": "cpu", "epochs": 5, "time_limit": 600.0})
        self.assertNotIn("app", config)  # the engine's default application

    def test_train_tiny_model(self):
        import tempfile

        from DeepMedLib import ModelLibrary
        from DeepMedLib.SelfTestData import skipWithoutEngine, trainTinyModel

        skipWithoutEngine(self, "training test")
        with tempfile.TemporaryDirectory() as folder:
            self.delayDisplay("Training a tiny model (under a minute on CPU)")
            finished = []
            ModelLibrary.changed.connect(finished.append)
            try:
                modelDir = trainTinyModel(folder, epochs=3, processEvents=slicer.app.processEvents,
                                          scene=slicer.mrmlScene)
            finally:
                ModelLibrary.changed.disconnect(finished.append)
            self.assertEqual(finished, [str(modelDir)])
            self.assertTrue((modelDir / "model.safetensors").is_file())
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode"), 1)
        self.delayDisplay("Test passed")
