"""The DeepMed Train panel: dataset, settings (defaults from the dataset check), time budget, Train / Stop /
Resume, a progress bar with ETA (or the time budget left) and live curves in a plot chart."""

from __future__ import annotations

import os

import qt
import slicer
from slicer.i18n import tr as _

from DeepMedLib import DatasetSelection, ModelLibrary
from DeepMedLib.ModuleWidget import preference, setPreference
from DeepMedLib.PanelHelpers import DependencySection, pollTimer, setBusy
from DeepMedLib.RemoteSection import RemoteSection
from DeepMedTrainLib.EngineChoices import EngineChoices
from DeepMedTrainLib.StartingModel import StartingModel
from DeepMedTrainLib.TrainSettings import applyReport, settingsFromWidgets

#: Applications, networks and losses come from the engine itself (``deepmed list choices --json``, EngineChoices),
#: so a trainable plug-in application appears here without a change to this module.


class TrainPanel:
    def __init__(self, ui, logic, scene):
        self.ui, self.logic, self.scene = ui, logic, scene
        self.run = None
        self.checkRun = None
        self.stoppedModelDir = self.droppedModelDir = None
        self.finishedModelDir = None  # the last model trained here, offered to Publish
        self.publishJob = None
        self.curves = None            # the live curves of the last training started here
        self.parameterNode = None
        self.derivedModelName = ""    # the model name the panel proposed from the dataset path
        self.timer = pollTimer(self.poll)
        self.dependencies = DependencySection(ui, onChanged=self.updateButtons,
                                              device=lambda: ui.deviceComboBox.currentText, runner=logic.runner)
        import ctk

        # No name filters on the dataset field: CTK turns them into a validator, and a folder (nnU-Net raw
        # layout) would never be valid input, so currentPathChanged would never come. Browse picks a manifest
        # file; 'Folder...' picks a folder.
        ui.datasetPathLineEdit.filters = ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Readable
        ui.datasetPathLineEdit.nameFilters = []
        ui.publishZipPathLineEdit.filters = ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Writable
        ui.publishZipPathLineEdit.nameFilters = [_("Model packages") + " (*.zip)"]
        self.remote = RemoteSection(ui.settingsCollapsibleButton.layout(), onReattach=self.onReattach,
                                    runner=logic.runner)
        self.choices = EngineChoices(ui, logic, lambda: self.parameterNode, self.timer,
                                     onApplication=self.onApplicationSelected, onIdle=self._stopTimerWhenIdle)
        self.startingModel = StartingModel(ui)
        ui.datasetPathLineEdit.currentPathChanged.connect(self.onDatasetChanged)
        ui.datasetPathLineEdit.validInputChanged.connect(self.onDatasetChanged)
        ui.datasetFolderButton.clicked.connect(self.onChooseDatasetFolder)
        ui.checkDatasetButton.clicked.connect(self.onCheckDataset)
        ui.trainButton.clicked.connect(self.onTrain)
        ui.stopButton.clicked.connect(self.onStop)
        ui.resumeButton.clicked.connect(self.onResume)
        ui.showCurvesButton.clicked.connect(self.onShowCurves)
        ui.publishButton.clicked.connect(self.onPublish)
        ui.publishLicenceLineEdit.textChanged.connect(self.updateButtons)
        DatasetSelection.datasetReady.connect(self.onDatasetReady)
        ModelLibrary.changed.connect(self.onLibraryChanged)
        self.refreshInitModels()
        self.choices.requestApplications()

    # ---- life cycle (DeepMedModuleWidget) -------------------------------------------------------
    def setParameterNode(self, parameterNode):
        """The module's parameter node (None while the module is not shown or the scene closes)."""
        self.parameterNode = parameterNode
        if parameterNode is None:
            return
        if not parameterNode.datasetPath and not self.datasetPath():
            last = preference("LastDataset")
            if last and os.path.exists(last):
                parameterNode.datasetPath = last
        if parameterNode.device == "auto" and preference("Device") in ("cpu", "cuda", "mps"):
            parameterNode.device = preference("Device")
        if parameterNode.datasetPath and parameterNode.datasetPath != self.datasetPath():
            self.ui.datasetPathLineEdit.currentPath = parameterNode.datasetPath
        self.choices.selectApplication(parameterNode.application)
        self.choices.selectLoss(parameterNode.loss)
        self.choices.selectNetwork(parameterNode.network)
        self.updateButtons()

    def enter(self):
        self.updateButtons()

    def onSceneClosing(self):
        """File > Close Scene: the curves' nodes go with the scene; a running training keeps training."""
        if self.run is not None:
            self.run.curves = None
        self.curves = None
        self.updateButtons()

    def cleanup(self):
        """Slicer exits: a running training is asked to stop and left to write its checkpoint alone (Resume
        continues it; Slicer does not wait for it), checks and publishing are cancelled."""
        DatasetSelection.datasetReady.disconnect(self.onDatasetReady)
        ModelLibrary.changed.disconnect(self.onLibraryChanged)
        self.timer.stop()
        self.dependencies.cleanup()
        for job in (self.checkRun.job if self.checkRun else None, self.publishJob, *self.choices.jobs()):
            if job is not None:
                job.cancel()
        if self.run is not None:
            run, self.run = self.run, None
            run.eventReceived.disconnect(self.onEvent)  # the panel is going away
            run.finished.disconnect(self.onFinished)
            run.curves = None
            run.stop()  # the worker checkpoints and ends by itself (also once Slicer's pipe is gone): no wait

    def onDatasetReady(self, manifestPath: str):
        """A dataset checked in DeepMed Data: offer it here unless the user already chose one."""
        if not self.datasetPath() and self.run is None:
            self.ui.datasetPathLineEdit.currentPath = manifestPath

    # ---- dataset --------------------------------------------------------------------------------
    def datasetPath(self) -> str:
        """The dataset path when the field holds valid input ('' otherwise, e.g. after clearing it)."""
        field = self.ui.datasetPathLineEdit
        return field.currentPath if field.currentPath.strip() else ""

    def onChooseDatasetFolder(self):
        folder = qt.QFileDialog.getExistingDirectory(None, _("Choose a dataset folder (nnU-Net raw layout)"),
                                                     self.datasetPath())
        if folder:
            self.ui.datasetPathLineEdit.currentPath = folder

    # ---- the engine's lists: applications and losses (EngineChoices) ---------------------------------
    @property
    def applicationsJob(self):
        return self.choices.applicationsJob

    @property
    def lossJob(self):
        return self.choices.lossJob

    @property
    def networkJob(self):
        return self.choices.networkJob

    def onApplicationSelected(self):
        self.refreshInitModels()
        self.updateButtons()

    def onDatasetChanged(self, *args):
        path = self.datasetPath()
        if path and self.ui.modelNameLineEdit.text in ("", self.derivedModelName):
            # follows the path as it is typed, until the user names the model
            stem = os.path.basename(os.path.dirname(path) if path.endswith("dataset.json") else path.rstrip("/\\"))
            self.derivedModelName = os.path.splitext(stem)[0]
            self.ui.modelNameLineEdit.text = self.derivedModelName
        if self.parameterNode is not None:
            self.parameterNode.datasetPath = path
        self.ui.datasetSummaryLabel.text = ""
        self.updateButtons()

    def onCheckDataset(self):
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not check the dataset."), waitCursor=True):
                from DeepMedDataLib.DataLogic import DataLogic

                self.checkRun = DataLogic(self.logic.runner).check(self.datasetPath())
                self.checkRun.job.finished.connect(self.onCheckFinished)
                self.ui.datasetSummaryLabel.text = _("Checking every case...")
                self.timer.start()
        finally:
            self.updateButtons()

    def onCheckFinished(self, result):
        report = self.checkRun.report or {}
        self.checkRun = None
        self.applyReport(report)
        self._stopTimerWhenIdle()
        self.updateButtons()

    def applyReport(self, report: dict):
        applyReport(self.ui, report)

    # ---- starting point: scratch or a library model (fine-tuning) -------------------------------
    def refreshInitModels(self, *args):
        self.startingModel.refreshInitModels()

    def initModel(self):
        """The library model the training starts from, or None (scratch)."""
        return self.startingModel.initModel()

    def onLibraryChanged(self, path: str):
        self.refreshInitModels()

    # ---- settings -------------------------------------------------------------------------------
    def settings(self) -> dict:
        """Typed engine settings from the widgets, by dotted key (written to the worker's config file)."""
        return settingsFromWidgets(self.ui)

    # ---- training -------------------------------------------------------------------------------
    def updateButtons(self, *args):
        ui = self.ui
        running = self.run is not None
        hasDataset = bool(self.datasetPath())
        hasApplication = bool(ui.applicationComboBox.currentText)
        ui.trainButton.enabled = (hasDataset and hasApplication and not running and self.checkRun is None
                                  and self.dependencies.ready)
        ui.checkDatasetButton.enabled = hasDataset and self.checkRun is None
        ui.stopButton.enabled = running
        ui.resumeButton.enabled = not running and self.stoppedModelDir is not None
        ui.settingsCollapsibleButton.enabled = not running
        ui.showCurvesButton.enabled = self.curves is not None
        ui.publishButton.enabled = (self.finishedModelDir is not None and bool(ui.publishLicenceLineEdit.text.strip())
                                    and self.publishJob is None and not running)
        if self.finishedModelDir is None:
            ui.publishButton.toolTip = _("Train a model first")
        elif not ui.publishLicenceLineEdit.text.strip():
            ui.publishButton.toolTip = _("A published model needs a licence")
        else:
            ui.publishButton.toolTip = _("Publish {model} as a verified package in your library").format(
                model=self.finishedModelDir.name)

    def onTrain(self, resume: bool = False):
        ui = self.ui
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not start the training."), waitCursor=True):
                self.run = self.logic.train(
                    self.datasetPath(), name=ui.modelNameLineEdit.text or None,
                    outputDir=self.stoppedModelDir if resume else None, application=ui.applicationComboBox.currentText,
                    epochs=ui.epochsSpinBox.value, device=ui.deviceComboBox.currentText,
                    settings=None if resume else self.settings(), resume=resume, scene=self.scene,
                    timeLimitSeconds=60 * ui.timeBudgetSpinBox.value, initModel=None if resume else self.initModel(),
                    runner=self.remote.runner())
                self._follow(_("Starting: {model}...").format(model=self.run.modelDir.name))
                setPreference("Device", ui.deviceComboBox.currentText)
                setPreference("LastDataset", self.datasetPath())
                self.timer.start()
                self.onShowCurves()
        finally:
            self.updateButtons()

    def _follow(self, status: str):
        self.curves = self.run.curves
        self.run.eventReceived.connect(self.onEvent)
        self.run.finished.connect(self.onFinished)
        self.stoppedModelDir = None
        setBusy(self.ui.progressBar, False, 0)
        self.ui.statusLabel.text = status

    def onResume(self):
        self.onTrain(resume=True)

    def onReattach(self, dropped: dict):
        """Follow the remote training again after a dropped connection (its curves are replayed)."""
        if self.curves is not None:
            self.curves.removeFromScene()
        self.run = self.logic.reattach(dropped["job_file"], self.droppedModelDir, self.remote.reattachRunner(),
                                       scene=self.scene)
        self._follow(_("Reattaching to {host}...").format(host=dropped["host"]))
        self.timer.start()
        self.updateButtons()

    def onStop(self):
        if self.run is not None:
            self.ui.statusLabel.text = _("Stopping after this step (writing a checkpoint)...")
            self.run.stop()

    def poll(self):
        for running in (self.run, self.checkRun, self.publishJob, *self.choices.jobs()):
            if running is not None:
                running.poll()
        if self.run is not None and self.run.remainingSeconds() is not None:
            self.ui.statusLabel.text = self.run.summary()

    def onEvent(self, event: dict):
        self.ui.progressBar.value = round(100 * self.run.fraction)
        eta = self.run.etaSeconds
        etaText = _("(ETA {time})").format(time=f"{int(eta) // 60}:{int(eta) % 60:02d}") if eta else ""
        self.ui.progressBar.format = "%p%" + (f"  {etaText}" if eta else "")
        self.ui.statusLabel.text = self.run.summary()

    def onFinished(self, result):
        run, self.run = self.run, None
        self.curves = run.curves  # None when the training failed before its first epoch
        self._stopTimerWhenIdle()
        if self.remote.noteFinished(result):
            self.droppedModelDir = run.modelDir
            self.ui.statusLabel.text = self.remote.statusLabel.text
        elif result.succeeded:
            self.ui.progressBar.value = 100
            self.ui.statusLabel.text = _("Finished: model '{model}' is in the library ({path}).").format(
                model=run.modelDir.name, path=run.modelDir)
            self.finishedModelDir = run.modelDir
            if not self.ui.publishTitleLineEdit.text:
                self.ui.publishTitleLineEdit.text = run.modelDir.name
        elif result.status == "stopped":
            self.stoppedModelDir = run.modelDir
            self.ui.statusLabel.text = run.status
        elif result.status == "cancelled":
            self.ui.statusLabel.text = _("Cancelled.")
        else:
            self.ui.statusLabel.text = _("Failed: {error}").format(error=result.errorMessage.splitlines()[0])
            slicer.util.errorDisplay(_("Training failed:\n{error}").format(error=result.errorMessage))
        self.updateButtons()

    def _stopTimerWhenIdle(self):
        if self.run is None and self.checkRun is None and self.publishJob is None and not self.choices.jobs():
            self.timer.stop()

    # ---- publishing -----------------------------------------------------------------------------
    def onPublish(self):
        ui = self.ui
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not publish the model."), waitCursor=True):
                zipPath = ui.publishZipPathLineEdit.currentPath.strip()
                if zipPath and not zipPath.lower().endswith(".zip"):
                    raise ValueError(_("{path}: a model package is saved as a .zip file").format(path=zipPath))
                self.publishJob = ModelLibrary.publishJob(
                    self.finishedModelDir, licence=ui.publishLicenceLineEdit.text.strip(),
                    title=ui.publishTitleLineEdit.text.strip(), version=ui.publishVersionLineEdit.text.strip(),
                    citation=ui.publishCitationLineEdit.text.strip(), zipPath=zipPath)
                self.publishJob.finished.connect(self.onPublished)
                ui.statusLabel.text = _("Publishing {model}...").format(model=self.finishedModelDir.name)
                self.timer.start()
        finally:
            self.updateButtons()

    def onPublished(self, result):
        job, self.publishJob = self.publishJob, None
        self._stopTimerWhenIdle()
        if result.succeeded:
            installed = [e for e in job.events if e["event"] == "installed"][-1]
            zipPath = self.ui.publishZipPathLineEdit.currentPath.strip()
            self.ui.statusLabel.text = (_("Published {model} {version} in the library and as {path}.") if zipPath else
                                        _("Published {model} {version} in the library.")).format(
                model=installed["id"], version=installed["version"], path=zipPath)
        else:
            self.ui.statusLabel.text = _("Publishing failed: {error}").format(error=result.errorMessage.splitlines()[0])
            slicer.util.errorDisplay(_("Publishing failed:\n{error}").format(error=result.errorMessage))
        self.updateButtons()

    def onShowCurves(self):
        """Show the live loss / validation chart in Slicer's plot view (nothing to show headless)."""
        layoutManager = slicer.app.layoutManager()
        if self.curves is None or layoutManager is None:
            return
        slicer.modules.plots.logic().ShowChartInLayout(self.curves.chart)



