"""The DeepMed Train panel: dataset, settings (defaults from the dataset check), Train / Stop / Resume,
a progress bar with ETA and live curves in a plot chart."""

from __future__ import annotations

import slicer

from DeepMedLib import DatasetSelection, ModelLibrary
from DeepMedLib.PanelHelpers import DependencySection, pollTimer, setBusy

#: Names offered in the dropdowns; they match the engine's registries (``deepmed list``; a test checks).
NETWORKS = ["unet", "basic_unet", "segresnet", "dynunet", "highresnet", "swin_unetr", "unetr"]
LOSSES = {"segmentation": ["auto", "dice_ce", "dice", "dice_focal", "generalized_dice", "tversky",
                           "generalized_wasserstein_dice", "cross_entropy"],
          "regression": ["auto", "l1", "mse", "rmse", "huber"]}
AUGMENTATIONS = ["flip", "rotate", "scale", "elastic", "noise", "gamma", "bias_field", "contrast"]


class TrainPanel:
    def __init__(self, ui, logic, scene):
        self.ui, self.logic, self.scene = ui, logic, scene
        self.run = None
        self.checkRun = None
        self.stoppedModelDir = None
        self.finishedModelDir = None  # the last model trained here, offered to Publish
        self.publishJob = None
        self.curves = None            # the live curves of the last training started here
        self.timer = pollTimer(self.poll)
        self.dependencies = DependencySection(ui, onChanged=self.updateButtons)
        import ctk

        ui.datasetPathLineEdit.filters = ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Dirs
        ui.datasetPathLineEdit.nameFilters = ["Dataset manifests (*.json *.csv)", "All files (*)"]
        ui.publishZipPathLineEdit.filters = ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Writable
        ui.publishZipPathLineEdit.nameFilters = ["Model packages (*.zip)"]
        ui.networkComboBox.addItems(NETWORKS)
        ui.applicationComboBox.currentIndexChanged.connect(self.onApplicationChanged)
        ui.datasetPathLineEdit.currentPathChanged.connect(self.onDatasetChanged)
        ui.checkDatasetButton.clicked.connect(self.onCheckDataset)
        ui.trainButton.clicked.connect(self.onTrain)
        ui.stopButton.clicked.connect(self.onStop)
        ui.resumeButton.clicked.connect(self.onResume)
        ui.showCurvesButton.clicked.connect(self.onShowCurves)
        ui.publishButton.clicked.connect(self.onPublish)
        ui.publishLicenceLineEdit.textChanged.connect(self.updateButtons)
        DatasetSelection.datasetReady.connect(self.onDatasetReady)
        self.onApplicationChanged()

    def cleanup(self):
        DatasetSelection.datasetReady.disconnect(self.onDatasetReady)
        self.timer.stop()

    def onDatasetReady(self, manifestPath: str):
        """A dataset checked in DeepMed Data: offer it here unless the user already chose one."""
        if not self.ui.datasetPathLineEdit.currentPath and self.run is None:
            self.ui.datasetPathLineEdit.currentPath = manifestPath

    # ---- dataset --------------------------------------------------------------------------------
    def onApplicationChanged(self, *args):
        combo = self.ui.lossComboBox
        combo.clear()
        combo.addItems(LOSSES[self.ui.applicationComboBox.currentText])
        self.updateButtons()

    def onDatasetChanged(self, *args):
        path = self.ui.datasetPathLineEdit.currentPath
        if path and not self.ui.modelNameLineEdit.text:
            import os

            stem = os.path.basename(os.path.dirname(path) if path.endswith("dataset.json") else path.rstrip("/\\"))
            self.ui.modelNameLineEdit.text = os.path.splitext(stem)[0]
        self.ui.datasetSummaryLabel.text = ""
        self.updateButtons()

    def onCheckDataset(self):
        with slicer.util.tryWithErrorDisplay("Could not check the dataset.", waitCursor=True):
            from DeepMedDataLib.DataLogic import DataLogic

            self.checkRun = DataLogic().check(self.ui.datasetPathLineEdit.currentPath)
            self.checkRun.job.finished.connect(self.onCheckFinished)
            self.ui.datasetSummaryLabel.text = "Checking every case..."
            self.timer.start()
        self.updateButtons()

    def onCheckFinished(self, result):
        report = self.checkRun.report or {}
        self.checkRun = None
        self.applyReport(report)
        self._stopTimerWhenIdle()
        self.updateButtons()

    def applyReport(self, report: dict):
        """Show the check's outcome and fill data-derived defaults (patch size) from the fingerprint."""
        fingerprint = report.get("fingerprint", {})
        problems = report.get("problems", [])
        lines = [f"{fingerprint.get('cases', 0)} case(s), {fingerprint.get('training_cases', 0)} with labels"]
        if "spacing" in fingerprint:
            lines.append("median spacing " + " x ".join(f"{v:.2f}" for v in fingerprint["spacing"]["median"]) + " mm")
        if problems:
            lines.append(f"{len(problems)} problem(s); first: {problems[0]}")
        else:
            lines.append("no problems found")
        self.ui.datasetSummaryLabel.text = "\n".join(lines)
        suggested = report.get("suggested", {})
        if suggested.get("patch_size") and self.ui.patchSizeLineEdit.text.strip() in ("", "auto"):
            self.ui.patchSizeLineEdit.text = ",".join(str(v) for v in suggested["patch_size"])

    # ---- settings -------------------------------------------------------------------------------
    def settings(self) -> dict:
        """Engine settings from the widgets (the same keys as ``deepmed train --set``)."""
        ui = self.ui
        settings = {"network.name": ui.networkComboBox.currentText, "loss.name": ui.lossComboBox.currentText,
                    "training.batch_size": ui.batchSizeSpinBox.value, "optimizer.lr": ui.learningRateSpinBox.value}
        patch = ui.patchSizeLineEdit.text.strip() or "auto"
        settings["data.patch_size"] = "auto" if patch == "auto" else [int(v) for v in patch.replace("x", ",").split(",")]
        if not ui.augmentationCheckBox.checked:
            settings.update({f"augmentation.{name}": False for name in AUGMENTATIONS})
        for assignment in ui.extraSettingsLineEdit.text.split(";"):
            if assignment.strip():
                key, separator, value = assignment.partition("=")
                if not separator:
                    raise ValueError(f"'{assignment.strip()}': expected key=value (as deepmed train --set)")
                settings[key.strip()] = value.strip()
        return settings

    # ---- training -------------------------------------------------------------------------------
    def updateButtons(self, *args):
        ui = self.ui
        running = self.run is not None
        hasDataset = bool(ui.datasetPathLineEdit.currentPath)
        ui.trainButton.enabled = hasDataset and not running and self.checkRun is None and self.dependencies.ready
        ui.checkDatasetButton.enabled = hasDataset and self.checkRun is None
        ui.stopButton.enabled = running
        ui.resumeButton.enabled = not running and self.stoppedModelDir is not None
        ui.settingsCollapsibleButton.enabled = not running
        ui.showCurvesButton.enabled = self.curves is not None
        ui.publishButton.enabled = (self.finishedModelDir is not None and bool(ui.publishLicenceLineEdit.text.strip())
                                    and self.publishJob is None and not running)
        if self.finishedModelDir is None:
            ui.publishButton.toolTip = "Train a model first"
        elif not ui.publishLicenceLineEdit.text.strip():
            ui.publishButton.toolTip = "A published model needs a licence"
        else:
            ui.publishButton.toolTip = f"Publish {self.finishedModelDir.name} as a verified package in your library"

    def onTrain(self, resume: bool = False):
        ui = self.ui
        with slicer.util.tryWithErrorDisplay("Could not start the training.", waitCursor=True):
            self.run = self.logic.train(ui.datasetPathLineEdit.currentPath, name=ui.modelNameLineEdit.text or None,
                                        outputDir=self.stoppedModelDir if resume else None,
                                        application=ui.applicationComboBox.currentText,
                                        epochs=ui.epochsSpinBox.value, device=ui.deviceComboBox.currentText,
                                        settings=None if resume else self.settings(), resume=resume,
                                        scene=self.scene)
            self.curves = self.run.curves
            self.run.eventReceived.connect(self.onEvent)
            self.run.finished.connect(self.onFinished)
            self.stoppedModelDir = None
            setBusy(ui.progressBar, False, 0)
            ui.statusLabel.text = f"Starting: {self.run.modelDir.name}..."
            self.timer.start()
            self.onShowCurves()
        self.updateButtons()

    def onResume(self):
        self.onTrain(resume=True)

    def onStop(self):
        if self.run is not None:
            self.ui.statusLabel.text = "Stopping after this step (writing a checkpoint)..."
            self.run.stop()

    def poll(self):
        for running in (self.run, self.checkRun, self.publishJob):
            if running is not None:
                running.poll()

    def onEvent(self, event: dict):
        self.ui.progressBar.value = int(round(100 * self.run.fraction))
        eta = self.run.etaSeconds
        self.ui.progressBar.format = "%p%" + (f"  (ETA {int(eta) // 60}:{int(eta) % 60:02d})" if eta else "")
        self.ui.statusLabel.text = self.run.summary()

    def onFinished(self, result):
        run, self.run = self.run, None
        self.curves = run.curves  # None when the training failed before its first epoch
        self._stopTimerWhenIdle()
        if result.succeeded:
            self.ui.progressBar.value = 100
            self.ui.statusLabel.text = f"Finished: model '{run.modelDir.name}' is in the library ({run.modelDir})."
            self.finishedModelDir = run.modelDir
            if not self.ui.publishTitleLineEdit.text:
                self.ui.publishTitleLineEdit.text = run.modelDir.name
        elif result.status == "stopped":
            self.stoppedModelDir = run.modelDir
            self.ui.statusLabel.text = run.status
        elif result.status == "cancelled":
            self.ui.statusLabel.text = "Cancelled."
        else:
            self.ui.statusLabel.text = "Failed: " + result.errorMessage.splitlines()[0]
            slicer.util.errorDisplay(f"Training failed:\n{result.errorMessage}")
        self.updateButtons()

    def _stopTimerWhenIdle(self):
        if self.run is None and self.checkRun is None and self.publishJob is None:
            self.timer.stop()

    # ---- publishing -----------------------------------------------------------------------------
    def onPublish(self):
        ui = self.ui
        with slicer.util.tryWithErrorDisplay("Could not publish the model.", waitCursor=True):
            self.publishJob = ModelLibrary.publishJob(
                self.finishedModelDir, licence=ui.publishLicenceLineEdit.text.strip(),
                title=ui.publishTitleLineEdit.text.strip(), version=ui.publishVersionLineEdit.text.strip(),
                citation=ui.publishCitationLineEdit.text.strip(), zipPath=ui.publishZipPathLineEdit.currentPath)
            self.publishJob.finished.connect(self.onPublished)
            ui.statusLabel.text = f"Publishing {self.finishedModelDir.name}..."
            self.timer.start()
        self.updateButtons()

    def onPublished(self, result):
        job, self.publishJob = self.publishJob, None
        self._stopTimerWhenIdle()
        if result.succeeded:
            installed = [e for e in job.events if e["event"] == "installed"][-1]
            zipPath = self.ui.publishZipPathLineEdit.currentPath
            self.ui.statusLabel.text = (f"Published {installed['id']} {installed['version']} in the library"
                                        + (f" and as {zipPath}" if zipPath else "") + ".")
        else:
            self.ui.statusLabel.text = "Publishing failed: " + result.errorMessage.splitlines()[0]
            slicer.util.errorDisplay(f"Publishing failed:\n{result.errorMessage}")
        self.updateButtons()

    def onShowCurves(self):
        """Show the live loss / validation chart in Slicer's plot view (nothing to show headless)."""
        layoutManager = slicer.app.layoutManager()
        if self.curves is None or layoutManager is None:
            return
        slicer.modules.plots.logic().ShowChartInLayout(self.curves.chart)



