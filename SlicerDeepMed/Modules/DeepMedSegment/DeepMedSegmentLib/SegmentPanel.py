"""The DeepMed Segment panel: model dropdown, input selectors from the model's channels, Segment/Cancel."""

from __future__ import annotations

import qt
import slicer

from DeepMedLib import ModelLibrary
from DeepMedLib.PanelHelpers import DependencySection, clearLayout, pollTimer, setBusy, volumeSelector

OUTPUT_TYPES = {"segmentation": "vtkMRMLSegmentationNode", "regression": "vtkMRMLScalarVolumeNode"}


class SegmentPanel:
    def __init__(self, ui, logic, scene):
        self.ui, self.logic, self.scene = ui, logic, scene
        self.models = []
        self.inputSelectors = []
        self.run = None
        self.lastOutput = None
        self.timer = pollTimer(self.poll)
        self.inputsLayout = qt.QFormLayout(ui.inputsFrame)
        ui.outputSelector.noneEnabled = True
        ui.outputSelector.noneDisplay = "Create new"
        ui.outputSelector.setMRMLScene(scene)
        self.dependencies = DependencySection(ui, onChanged=self.updateButtons)
        ui.modelComboBox.currentIndexChanged.connect(self.onModelChanged)
        ui.refreshModelsButton.clicked.connect(self.refreshModels)
        ui.applyButton.clicked.connect(self.onApply)
        ui.cancelButton.clicked.connect(self.onCancel)
        ModelLibrary.changed.connect(self.onLibraryChanged)
        self.refreshModels()

    def cleanup(self):
        ModelLibrary.changed.disconnect(self.onLibraryChanged)
        self.timer.stop()

    # ---- models -----------------------------------------------------------------------------------
    def refreshModels(self, selectId: str | None = None):
        current = selectId or (self.currentModel().id if self.currentModel() else None)
        self.models = ModelLibrary.models()
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.clear()
        for model in self.models:
            combo.addItem(f"{model.title} ({model.application})")
        ids = [m.id for m in self.models]
        combo.currentIndex = ids.index(current) if current in ids else (0 if ids else -1)
        combo.blockSignals(False)
        if not self.models:
            self.ui.modelDescriptionLabel.text = ("No models in your library yet: train one in DeepMed Train "
                                                  f"(library: {ModelLibrary.library_dir()}).")
        self.onModelChanged()

    def onLibraryChanged(self, modelDir: str):
        self.refreshModels()

    def currentModel(self):
        index = self.ui.modelComboBox.currentIndex
        return self.models[index] if 0 <= index < len(self.models) else None

    def onModelChanged(self, *args):
        model = self.currentModel()
        clearLayout(self.inputsLayout)
        self.inputSelectors = []
        if model is not None:
            self.ui.modelDescriptionLabel.text = ModelLibrary.describe(model)
            for channel in model.input_names:
                selector = volumeSelector(self.scene, ["vtkMRMLScalarVolumeNode"], f"Volume for the {channel} input")
                selector.currentNodeChanged.connect(self.updateButtons)
                self.inputsLayout.addRow(f"{channel}:", selector)
                self.inputSelectors.append(selector)
            self.ui.outputSelector.nodeTypes = [OUTPUT_TYPES.get(model.application, "vtkMRMLScalarVolumeNode")]
            self.ui.outputSelector.setMRMLScene(self.scene)
            self.ui.applyButton.text = "Segment" if model.application == "segmentation" else "Predict"
        self.updateButtons()

    # ---- running ----------------------------------------------------------------------------------
    def updateButtons(self, *args):
        running = self.run is not None
        ready = (self.currentModel() is not None and bool(self.inputSelectors)
                 and all(s.currentNode() is not None for s in self.inputSelectors))
        self.ui.applyButton.enabled = ready and not running and self.dependencies.ready
        self.ui.cancelButton.enabled = running
        self.ui.modelComboBox.enabled = not running
        if not ready and not running and self.currentModel() is not None:
            self.ui.applyButton.toolTip = "Select a volume for every input"
        else:
            self.ui.applyButton.toolTip = "Run the model on the input volumes"

    def onApply(self):
        model = self.currentModel()
        with slicer.util.tryWithErrorDisplay("Could not start the model.", waitCursor=True):
            self.run = self.logic.run(model=model, inputVolumes=[s.currentNode() for s in self.inputSelectors],
                                      device=self.ui.deviceComboBox.currentText,
                                      outputNode=self.ui.outputSelector.currentNode(),
                                      tta=self.ui.ttaCheckBox.checked, keepLargest=self.ui.keepLargestCheckBox.checked,
                                      showIn3D=self.ui.show3DCheckBox.checked)
            self.run.finished.connect(self.onFinished)
            setBusy(self.ui.progressBar, True)
            self.ui.statusLabel.text = f"Running {model.title} on {self.ui.deviceComboBox.currentText}..."
            self.timer.start()
        self.updateButtons()

    def poll(self):
        if self.run is not None:
            self.run.poll()

    def onCancel(self):
        if self.run is not None:
            self.ui.statusLabel.text = "Cancelling..."
            self.run.cancel()

    def onFinished(self, outputNode, result):
        self.timer.stop()
        self.run = None
        setBusy(self.ui.progressBar, False, 100 if result.succeeded else 0)
        if result.succeeded:
            self.lastOutput = outputNode
            self.ui.statusLabel.text = f"Done: {outputNode.GetName()}"
            self._show(outputNode)
        elif result.status == "cancelled":
            self.ui.statusLabel.text = "Cancelled; the scene is unchanged."
        else:
            self.ui.statusLabel.text = "Failed: " + result.errorMessage.splitlines()[0]
            slicer.util.errorDisplay(f"Segmentation failed:\n{result.errorMessage}")
        self.updateButtons()

    def _show(self, outputNode):
        """Show the result over its input in the slice views (in Slicer; nothing to show headless)."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:
            return
        background = self.inputSelectors[0].currentNode() if self.inputSelectors else None
        if outputNode.IsA("vtkMRMLSegmentationNode"):
            slicer.util.setSliceViewerLayers(background=background, fit=True)
        else:
            slicer.util.setSliceViewerLayers(background=outputNode, foreground=background, foregroundOpacity=0.0,
                                             fit=True)
