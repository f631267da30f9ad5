"""The Train panel's application and loss choices, asked from the engine in workers (no torch in Slicer):
``deepmed list applications --json`` (plug-ins included, the default first) and, for the chosen application,
``deepmed list losses --app APP --json``. The parameter node keeps both choices."""

from __future__ import annotations

import qt
from slicer.i18n import tr as _


class EngineChoices:
    """Owns ``ui.applicationComboBox`` and ``ui.lossComboBox``. ``parameterNode()`` gives the panel's parameter
    node (or None); ``onApplication()`` runs after the application changed, ``onIdle()`` after a list came."""

    def __init__(self, ui, logic, parameterNode, timer, onApplication, onIdle):
        self.ui, self.logic, self.parameterNode, self.timer = ui, logic, parameterNode, timer
        self.onApplication, self.onIdle = onApplication, onIdle
        self.applicationsJob = None   # the engine's answer: which applications it has
        self.lossJob = None           # the engine's answer: which losses fit the chosen application
        self.descriptions = {}
        ui.applicationComboBox.currentIndexChanged.connect(self.onApplicationChanged)
        ui.lossComboBox.currentIndexChanged.connect(self.onLossChanged)

    def jobs(self) -> list:
        return [job for job in (self.applicationsJob, self.lossJob) if job is not None]

    # ---- applications ---------------------------------------------------------------------------------
    def requestApplications(self):
        """Ask the engine for its applications; the list fills when it answers."""
        self.ui.applicationComboBox.toolTip = _("Asking the engine for its applications...")
        try:
            self.applicationsJob = self.logic.applicationsJob()
        except Exception as exc:  # no engine yet: the Dependencies section says what to install
            self.applicationsJob = None
            self.ui.applicationComboBox.toolTip = _("Applications from the engine unavailable: {error}").format(
                error=exc)
            return
        self.applicationsJob.finished.connect(lambda result, job=self.applicationsJob: self.onApplications(job, result))
        self.timer.start()

    def onApplications(self, job, result):
        if job is not self.applicationsJob:
            return
        self.applicationsJob = None
        self.onIdle()
        described = job.outputJson() if result.succeeded else None
        if not isinstance(described, dict) or not described:
            self.ui.applicationComboBox.toolTip = _("The engine did not list its applications: {error}").format(
                error=result.errorMessage.splitlines()[0] if result.errorMessage else _("no answer"))
            return
        self.descriptions = {str(k): str(v) for k, v in described.items()}
        combo = self.ui.applicationComboBox
        node = self.parameterNode()
        wanted = (node.application if node is not None else "") or combo.currentText
        combo.blockSignals(True)
        combo.clear()
        for name, description in self.descriptions.items():
            combo.addItem(name)
            combo.setItemData(combo.count - 1, description, qt.Qt.ToolTipRole)
        combo.blockSignals(False)
        combo.toolTip = _("What the model learns (the engine's applications, plug-ins included)")
        self.selectApplication(wanted)

    def selectApplication(self, name: str):
        combo = self.ui.applicationComboBox
        index = combo.findText(name) if name else -1
        combo.currentIndex = index if index >= 0 else (0 if combo.count else -1)
        self.onApplicationChanged()

    def onApplicationChanged(self, *args):
        application = self.ui.applicationComboBox.currentText
        node = self.parameterNode()
        if node is not None and application:
            node.application = application
        self.setLossChoices(["auto"])
        if self.lossJob is not None:
            self.lossJob.cancel()
            self.lossJob = None
        if application:
            self.requestLosses(application)
        self.onApplication()

    # ---- losses ---------------------------------------------------------------------------------------
    def requestLosses(self, application: str):
        try:
            self.lossJob = self.logic.lossChoicesJob(application)
        except Exception as exc:  # no engine: "auto" stays the only choice
            self.lossJob = None
            self.ui.lossComboBox.toolTip = _("Loss choices from the engine unavailable: {error}").format(error=exc)
            return
        self.lossJob.finished.connect(lambda result, job=self.lossJob: self.onLossChoices(job, result))
        self.timer.start()

    def onLossChoices(self, job, result):
        if job is not self.lossJob:
            return  # superseded by another application choice
        self.lossJob = None
        self.onIdle()
        names = job.outputJson() if result.succeeded else None
        if isinstance(names, list) and all(isinstance(n, str) for n in names) and names:
            self.setLossChoices(["auto"] + [n for n in names if n != "auto"])
            self.ui.lossComboBox.toolTip = _("Losses that fit this application (from the engine's registry)")

    def setLossChoices(self, names):
        combo = self.ui.lossComboBox
        node = self.parameterNode()
        wanted = node.loss if node is not None else combo.currentText
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(list(names))
        combo.blockSignals(False)
        self.selectLoss(wanted)

    def selectLoss(self, name: str):
        combo = self.ui.lossComboBox
        index = combo.findText(name)
        combo.currentIndex = index if index >= 0 else 0
        self.onLossChanged()

    def onLossChanged(self, *args):
        node = self.parameterNode()
        if node is not None and self.ui.lossComboBox.currentText:
            node.loss = self.ui.lossComboBox.currentText
