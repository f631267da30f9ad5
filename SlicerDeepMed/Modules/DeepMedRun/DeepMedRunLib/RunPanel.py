"""The DeepMed Run panel (module DeepMedRun): model dropdown, the mode the model's card offers, inputs
for that mode (a volume per channel, two cases, or condition values), Segment/Predict/Generate, Cancel. What
the output is (segmentation, volume, table, sequence) comes from the card, never from an application name."""

from __future__ import annotations

import os

import qt
import slicer
from slicer.i18n import tr as _

from DeepMedLib import ModelLibrary, Outputs
from DeepMedLib.ModuleWidget import setPreference
from DeepMedLib.PanelHelpers import DependencySection, configureNodeSelector, pollTimer, setBusy
from DeepMedLib.RemoteSection import RemoteSection
from DeepMedRunLib import ShowResult, TrustedImport
from DeepMedRunLib.ModeInputs import ModeInputs
from DeepMedRunLib.RefineSection import RefineSection


class RunPanel:
    def __init__(self, ui, logic, scene):
        import ctk

        self.ui, self.logic, self.scene = ui, logic, scene
        self.models = []
        self.run = None
        self.lastOutput = None
        self.parameterNode = None
        self.timer = pollTimer(self.poll)
        self.inputs = ModeInputs(ui, scene, onChanged=self.onInputsChanged)
        ui.outputSelector.currentNodeChanged.connect(self.onOutputChanged)
        configureNodeSelector(ui.outputSelector, scene, [Outputs.nodeClass("label_map")],
                              _("Create a new node, or choose one to replace"), noneDisplay=_("Create new"))
        self.dependencies = DependencySection(ui, onChanged=self.updateButtons,
                                              device=lambda: ui.deviceComboBox.currentText, runner=logic.runner)
        self.remote = RemoteSection(ui.outputCollapsibleButton.layout(), runner=logic.runner)  # Run on: here / remote
        self.refine = RefineSection(self)  # a mode that takes clicks: points refine a segment (warm worker)
        self.catalogueRows = []   # catalogue models not installed yet (from 'deepmed zoo list')
        self.zooJobs = []         # running catalogue / download / import workers
        ui.modelComboBox.currentIndexChanged.connect(self.onModelChanged)
        ui.refreshModelsButton.clicked.connect(self.onRefresh)
        ui.downloadModelButton.clicked.connect(self.onDownload)
        ui.importModelButton.clicked.connect(self.onImport)
        ui.removeModelButton.clicked.connect(self.onRemove)
        ui.catalogueLineEdit.textChanged.connect(self.updateButtons)
        ui.addCatalogueButton.clicked.connect(self.onAddCatalogue)
        ui.applyButton.clicked.connect(self.onApply)
        ui.cancelButton.clicked.connect(self.onCancel)
        ModelLibrary.changed.connect(self.onLibraryChanged)
        ui.libraryPathLineEdit.filters = ctk.ctkPathLineEdit.Dirs
        ui.libraryPathLineEdit.currentPath = str(ModelLibrary.libraryFolder())
        # Without name filters CTK's validator is ".+": currentPathChanged comes with every key typed. A typed
        # folder counts once confirmed (Enter or leaving the field); Browse and the history count at once.
        ui.libraryPathLineEdit.currentPathChanged.connect(self.onLibraryPathChanged)
        ui.libraryPathLineEdit.comboBox().lineEdit().editingFinished.connect(self.onLibraryPathEdited)
        self.refreshModels()
        self.readCatalogues()

    # ---- life cycle (DeepMedModuleWidget) -------------------------------------------------------
    def setParameterNode(self, parameterNode):
        """A scene's state (e.g. a scene loaded from a file): its model, input volumes and output node."""
        self.parameterNode = None  # restoring writes nothing back
        if parameterNode is not None and parameterNode.model and parameterNode.model != self.currentId():
            self.refreshModels(selectId=parameterNode.model)
        if parameterNode is not None:
            volumes = list(parameterNode.inputVolumes)
            if len(volumes) == len(self.inputs.selectors) and any(v is not None for v in volumes):
                for selector, volume in zip(self.inputs.selectors, volumes):
                    selector.setCurrentNode(volume)
            if parameterNode.outputNode is not None:
                self.ui.outputSelector.setCurrentNode(parameterNode.outputNode)
        self.parameterNode = parameterNode
        self.onInputsChanged()
        self.onOutputChanged()

    def enter(self):
        """Every time the module is shown: models trained or installed meanwhile appear; the chosen model
        and input volumes stay."""
        self.refreshModels()

    def onSceneClosing(self):
        """File > Close Scene: the inputs go with the scene, so a running inference is cancelled."""
        if self.run is not None:
            self.run.cancel()
        self.refine.close()
        self.lastOutput = None

    def cleanup(self):
        """Slicer exits: a running inference and the catalogue workers are cancelled."""
        ModelLibrary.changed.disconnect(self.onLibraryChanged)
        self.dependencies.cleanup()
        self.refine.close()
        if self.run is not None:
            self.run.cancel()
        for job in self.zooJobs:
            job.cancel()
        self.timer.stop()

    # ---- models: the library, the catalogues, packages ---------------------------------------------
    def refreshModels(self, selectId: str | None = None):
        """Installed models first, then catalogue models that can be downloaded."""
        current = selectId or self.currentId()
        self.models = ModelLibrary.models()
        installedIds = {m.id for m in self.models}
        self.catalogueRows = [row for row in self.catalogueRows if row["id"] not in installedIds]
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.clear()
        for model in self.models:
            combo.addItem(f"{model.title} ({model.application})")
        for row in self.catalogueRows:
            combo.addItem(_("{title}: download {size}, {licence}").format(
                title=row.get("title", row["id"]), size=row.get("size", "?"), licence=row.get("licence", "?")))
        ids = [m.id for m in self.models] + [row["id"] for row in self.catalogueRows]
        combo.currentIndex = ids.index(current) if current in ids else (0 if ids else -1)
        combo.blockSignals(False)
        if not ids:
            self.ui.modelDescriptionLabel.text = _("No models yet: train one in DeepMed Train or import a package "
                                                   "(library: {folder}).").format(folder=ModelLibrary.libraryFolder())
        self.onModelChanged()

    def onLibraryPathChanged(self, path):
        """Browse or the field's history set the path: use it. Typing: wait until the user confirms it."""
        if not self.ui.libraryPathLineEdit.comboBox().lineEdit().modified:
            self.onLibraryFolderChosen(path)

    def onLibraryPathEdited(self):
        lineEdit = self.ui.libraryPathLineEdit.comboBox().lineEdit()
        if lineEdit.modified:
            lineEdit.modified = False
            self.onLibraryFolderChosen(self.ui.libraryPathLineEdit.currentPath)

    def onLibraryFolderChosen(self, path):
        """Another library folder: its models are listed, trainings land there, and it is remembered."""
        if not path or os.path.abspath(path) == os.path.abspath(str(ModelLibrary.libraryFolder())):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not use this folder as the model library.")):
            ModelLibrary.useLibraryFolder(path)
            setPreference("LibraryFolder", path)

    def onRefresh(self):
        self.refreshModels()
        self.readCatalogues()

    def onLibraryChanged(self, modelDir: str):
        self.refreshModels()

    def currentModel(self):
        index = self.ui.modelComboBox.currentIndex
        return self.models[index] if 0 <= index < len(self.models) else None

    def currentCatalogueRow(self):
        index = self.ui.modelComboBox.currentIndex - len(self.models)
        return self.catalogueRows[index] if 0 <= index < len(self.catalogueRows) else None

    def currentId(self):
        model, row = self.currentModel(), self.currentCatalogueRow()
        return model.id if model else row["id"] if row else None

    def onModelChanged(self, *args):
        model, row = self.currentModel(), self.currentCatalogueRow()
        if model is not self.inputs.model:
            self.inputs.showModel(model)
            self.updateFoldChoice(model)
        if self.parameterNode is not None and self.currentId():
            self.parameterNode.model = self.currentId()
        if model is not None:
            self.ui.modelDescriptionLabel.text = ModelLibrary.describe(model)
            mode = self.inputs.mode()
            self.ui.applyButton.text = Outputs.actionName(mode.output_kind, mode.inputs)
        elif row is not None:
            self.ui.modelDescriptionLabel.text = (
                f"{row.get('title', row['id'])} {row.get('version', '')} ({row.get('task', '?')})\n"
                + (f"{row['description']}\n" if row.get("description") else "")
                + _("Not installed. Download: {size}, licence {licence}; the file is checked against the "
                    "catalogue's {checksum} before it is installed.").format(
                    size=row.get("size", "?"), licence=row.get("licence", "?"),
                    checksum=row.get("checksum") or "sha256"))
        self.refine.update()
        self.updateButtons()

    # ---- the inputs of the chosen mode (ModeInputs) --------------------------------------------------
    @property
    def inputSelectors(self):
        return self.inputs.selectors

    @property
    def conditionBoxes(self):
        return self.inputs.conditionBoxes

    @property
    def stepsBox(self):
        return self.inputs.stepsBox

    @property
    def seedBox(self):
        return self.inputs.seedBox

    def onInputsChanged(self):
        mode = self.inputs.mode()
        if mode is not None:
            self.ui.applyButton.text = Outputs.actionName(mode.output_kind, mode.inputs)
        if self.parameterNode is not None:
            self.parameterNode.inputVolumes = self.inputs.volumes()
        self.refine.update()
        self.updateButtons()

    def onOutputChanged(self, *args):
        if self.parameterNode is not None:
            self.parameterNode.outputNode = self.ui.outputSelector.currentNode()

    def updateFoldChoice(self, model):
        """An ensemble of cross-validation folds runs all folds (best) or one of them (faster)."""
        folds = model.folds if model is not None else []
        self.ui.foldsComboBox.clear()
        self.ui.foldsComboBox.visible = self.ui.foldsLabel.visible = bool(folds)
        if folds:
            self.ui.foldsComboBox.addItem(_("ensemble of {count} folds").format(count=len(folds)))
            for fold in folds:
                self.ui.foldsComboBox.addItem(_("fold {fold} only (faster)").format(fold=fold))

    def chosenFolds(self):
        model = self.currentModel()
        index = self.ui.foldsComboBox.currentIndex
        if model is None or not model.folds or index <= 0:
            return None
        return [model.folds[index - 1]]

    def _startZooJob(self, job, onFinished):
        self.zooJobs.append(job)
        job.finished.connect(lambda result: self._zooJobFinished(job, result, onFinished))
        self.timer.start()
        self.updateButtons()

    def _zooJobFinished(self, job, result, onFinished):
        self.zooJobs.remove(job)
        onFinished(job, result)
        if self.run is None and not self.zooJobs:
            self.timer.stop()
        self.updateButtons()

    def readCatalogues(self):
        """List catalogue models in the background (catalogues may be on the network); the newest read wins."""
        if getattr(self, "catalogueJob", None) is not None:
            self.catalogueJob.cancel()
        self.catalogueJob = ModelLibrary.catalogueJob()
        self._startZooJob(self.catalogueJob, self._onCatalogues)

    def _onCatalogues(self, job, result):
        events = [e for e in job.events if e["event"] == "models"]
        if job is not self.catalogueJob:
            return  # an older read, superseded
        self.catalogueJob = None
        if not result.succeeded or not events:
            if result.status == "failed":
                self.ui.statusLabel.text = _("Could not list catalogue models: {error}").format(
                    error=result.errorMessage.splitlines()[0])
            return
        installed = {m.id for m in ModelLibrary.models()}
        self.catalogueRows = [row for row in events[-1]["models"] if row["id"] not in installed]
        self.refreshModels()
        if events[-1]["warnings"]:
            self.ui.statusLabel.text = _("Some catalogues could not be read (offline?): {warning}").format(
                warning=events[-1]["warnings"][0])

    def onDownload(self):
        row = self.currentCatalogueRow()
        if row is None:
            return
        job = ModelLibrary.pullJob(row["id"])
        job.eventReceived.connect(self._onDownloadEvent)
        self.ui.statusLabel.text = _("Downloading {model} ({size})...").format(model=row["id"],
                                                                           size=row.get("size", "?"))
        setBusy(self.ui.progressBar, False, 0)
        self._startZooJob(job, lambda job, result: self._onInstalled(job, result, row["id"], _("Download")))

    def _onDownloadEvent(self, event):
        if event["event"] == "download" and event.get("total"):
            self.ui.progressBar.value = int(100 * event["done"] / event["total"])

    def onImport(self):
        path = qt.QFileDialog.getOpenFileName(None, _("Import model package"), "",
                                              _("Model packages and MONAI bundles") + " (*.zip);;" + _("All files")
                                              + " (*)")
        if path:
            self.importPackage(path)

    def importPackage(self, path: str, trustCode: bool = False):
        self.ui.statusLabel.text = _("Importing {path}...").format(path=path)
        setBusy(self.ui.progressBar, True)
        self._startZooJob(ModelLibrary.importJob(path, trustCode=trustCode),
                          lambda job, result: self._onImported(job, result, path, trustCode))

    def _onImported(self, job, result, path: str, trusted: bool):
        """A bundle that needs its own code: show what would run (nothing runs to find out), then ask."""
        if trusted or not TrustedImport.needsTrust(result):
            self._onInstalled(job, result, None, _("Import"))
            return
        self.ui.statusLabel.text = _("The bundle needs its own code; listing it...")
        self._startZooJob(ModelLibrary.inspectJob(path), lambda job, inspected: self._onInspected(
            job, inspected, path, result))

    def _onInspected(self, job, inspected, path: str, refused):
        report = job.outputJson() if inspected.succeeded else None
        if not isinstance(report, dict) or not report.get("needs_code"):
            self._onInstalled(job, refused, None, _("Import"))
            return
        setBusy(self.ui.progressBar, False, 0)
        if slicer.util.confirmOkCancelDisplay(TrustedImport.confirmationText(report)):
            self.importPackage(path, trustCode=True)
        else:
            self.ui.statusLabel.text = _("Not imported: the bundle's own code was not trusted.")

    def _onInstalled(self, job, result, modelId, what):
        setBusy(self.ui.progressBar, False, 100 if result.succeeded else 0)
        if not result.succeeded:
            self.ui.statusLabel.text = _("{what} failed: {error}").format(what=what,
                                                                          error=result.errorMessage.splitlines()[0])
            slicer.util.errorDisplay(_("{what} failed, nothing was installed:\n{error}").format(
                what=what, error=result.errorMessage))
            return
        installed = [e for e in job.events if e["event"] == "installed"][-1]
        self.refreshModels(selectId=installed["id"])
        self.ui.statusLabel.text = _("Installed {model} {version}.").format(model=installed["id"],
                                                                           version=installed["version"])

    def onAddCatalogue(self):
        source = self.ui.catalogueLineEdit.text.strip()
        self.ui.statusLabel.text = _("Reading the catalogue {source}...").format(source=source)
        self._startZooJob(ModelLibrary.addCatalogueJob(source), self._onCatalogueAdded)

    def _onCatalogueAdded(self, job, result):
        if not result.succeeded:
            self.ui.statusLabel.text = _("Catalogue not added: {error}").format(
                error=result.errorMessage.splitlines()[0])
            slicer.util.errorDisplay(_("The catalogue was not added:\n{error}").format(error=result.errorMessage))
            return
        self.ui.catalogueLineEdit.text = ""
        self.ui.statusLabel.text = _("Catalogue added; its models are listed above.")
        self.readCatalogues()

    def onRemove(self):
        model = self.currentModel()
        if model is None or not slicer.util.confirmOkCancelDisplay(
                _("Remove the model '{model}' from your library ({path})?").format(model=model.id, path=model.path)):
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not remove the model.")):
                ModelLibrary.removeModel(model.id)
                self.ui.statusLabel.text = _("Removed {model}.").format(model=model.id)
        finally:
            self.updateButtons()

    # ---- running ----------------------------------------------------------------------------------
    def updateButtons(self, *args):
        running = self.run is not None
        ready = self.currentModel() is not None and self.inputs.ready()
        self.ui.applyButton.enabled = ready and not running and self.dependencies.ready
        self.ui.cancelButton.enabled = running
        self.ui.modelComboBox.enabled = not running
        self.ui.downloadModelButton.enabled = self.currentCatalogueRow() is not None and not self.zooJobs
        self.ui.removeModelButton.enabled = self.currentModel() is not None and not running
        self.ui.addCatalogueButton.enabled = bool(self.ui.catalogueLineEdit.text.strip()) and not self.zooJobs
        if not ready and not running and self.currentModel() is not None:
            self.ui.applyButton.toolTip = _("Select a volume for every input")
        else:
            self.ui.applyButton.toolTip = _("Run the model on the input volumes")

    def onApply(self):
        model = self.currentModel()
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not start the model."), waitCursor=True):
                self.run = self.logic.run(model=model, inputVolumes=self.inputs.volumes(),
                                          device=self.ui.deviceComboBox.currentText,
                                          outputNode=self.ui.outputSelector.currentNode(),
                                          tta=self.ui.ttaCheckBox.checked,
                                          keepLargest=self.ui.keepLargestCheckBox.checked,
                                          showIn3D=self.ui.show3DCheckBox.checked, folds=self.chosenFolds(),
                                          runner=self.remote.runner(), **self.inputs.runOptions())
                self.ui.resultLabel.visible = False
                self.run.finished.connect(self.onFinished)
                setBusy(self.ui.progressBar, True)
                self.ui.statusLabel.text = _("Running {model} on {device}...").format(
                    model=model.title, device=self.ui.deviceComboBox.currentText)
                self.timer.start()
        finally:
            self.updateButtons()

    def poll(self):
        if self.run is not None:
            self.run.poll()
        for job in list(self.zooJobs):
            job.poll()

    def onCancel(self):
        if self.run is not None:
            self.ui.statusLabel.text = _("Cancelling...")
            self.run.cancel()

    def onFinished(self, outputNode, result):
        self.run = None
        if not self.zooJobs:
            self.timer.stop()
        setBusy(self.ui.progressBar, False, 100 if result.succeeded else 0)
        if result.succeeded:
            self.lastOutput = outputNode
            self.ui.statusLabel.text = _("Done: {node}").format(node=outputNode.GetName())
            self._showValues(outputNode)
            ShowResult.showResult(outputNode, self.inputSelectors[0].currentNode() if self.inputSelectors else None)
        elif result.status == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; the scene is unchanged.")
        else:
            self.ui.statusLabel.text = _("Failed: {error}").format(error=result.errorMessage.splitlines()[0])
            slicer.util.errorDisplay(_("The model failed:\n{error}").format(error=result.errorMessage))
        self.updateButtons()

    def _showValues(self, outputNode):
        """Case-level results (a table node) are also written into the panel: 'class: male, p_male: 0.88'."""
        if not outputNode.IsA("vtkMRMLTableNode") or outputNode.GetNumberOfRows() == 0:
            return
        cells = []
        for column in range(outputNode.GetNumberOfColumns()):
            text = outputNode.GetCellText(0, column)
            try:
                text = f"{float(text):.4g}"
            except ValueError:
                pass
            cells.append(f"{outputNode.GetColumnName(column)}: {text}")
        self.ui.resultLabel.text = ", ".join(cells)
        self.ui.resultLabel.visible = True
