"""The Train panel's application, network and loss choices, asked from the engine in workers (no torch in
Slicer): one ``deepmed list choices --json`` per panel gives the applications it trains (plug-ins included, the
default first) and, per application, its networks and losses; changing the application asks nothing more. The
parameter node keeps the choices."""

from __future__ import annotations

import qt
from slicer.i18n import tr as _


class ApplicationList:
    """One combo box whose items the engine gave per application ("auto" first): the networks or the losses
    that fit it. ``field`` names the parameter node's attribute that keeps the choice."""

    def __init__(self, combo, field: str, fitting: str, unavailable: str, parameterNode):
        """``fitting``/``unavailable``: the combo's tooltips when the engine answered / did not ({error})."""
        self.combo, self.field, self.parameterNode = combo, field, parameterNode
        self.fitting, self.unavailable = fitting, unavailable
        self.byApplication = {}   # {application: [names]} from the engine's answer
        self.job = None           # kept for callers that wait on it: the lists come with the applications
        combo.currentIndexChanged.connect(self.onChanged)

    def request(self, application: str):
        """The choices the engine gave for ``application`` ("auto" alone while it has not answered)."""
        names = self.byApplication.get(application)
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            self.setChoices(["auto"] + [n for n in names if n != "auto"])
            self.combo.toolTip = self.fitting
        else:
            self.setChoices(["auto"])

    def unanswered(self, error: str):
        self.combo.toolTip = self.unavailable.format(error=error)

    def setChoices(self, names):
        node = self.parameterNode()
        wanted = getattr(node, self.field) if node is not None else self.combo.currentText
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(list(names))
        self.combo.blockSignals(False)
        self.select(wanted)

    def select(self, name: str):
        index = self.combo.findText(name)
        self.combo.currentIndex = index if index >= 0 else 0
        self.onChanged()

    def onChanged(self, *args):
        node = self.parameterNode()
        if node is not None and self.combo.currentText:
            setattr(node, self.field, self.combo.currentText)


class EngineChoices:
    """Owns ``ui.applicationComboBox``, ``ui.networkComboBox`` and ``ui.lossComboBox``. ``parameterNode()``
    gives the panel's parameter node (or None); ``onApplication()`` runs after the application changed,
    ``onIdle()`` after a list came."""

    def __init__(self, ui, logic, parameterNode, timer, onApplication, onIdle):
        self.ui, self.logic, self.parameterNode, self.timer = ui, logic, parameterNode, timer
        self.onApplication, self.onIdle = onApplication, onIdle
        self.applicationsJob = None   # the engine's answer: which applications it has
        self.descriptions = {}
        self.networks = ApplicationList(
            ui.networkComboBox, "network", _("Networks that fit this application (from the engine's registry)"),
            _("Network choices from the engine unavailable: {error}"), parameterNode)
        self.losses = ApplicationList(
            ui.lossComboBox, "loss", _("Losses that fit this application (from the engine's registry)"),
            _("Loss choices from the engine unavailable: {error}"), parameterNode)
        ui.applicationComboBox.currentIndexChanged.connect(self.onApplicationChanged)

    @property
    def lossJob(self):
        return self.losses.job

    @property
    def networkJob(self):
        return self.networks.job

    def jobs(self) -> list:
        return [job for job in (self.applicationsJob, self.networks.job, self.losses.job) if job is not None]

    # ---- applications ---------------------------------------------------------------------------------
    def requestApplications(self):
        """Ask the engine for its applications and their networks and losses (one worker); the lists fill when
        it answers."""
        self.ui.applicationComboBox.toolTip = _("Asking the engine for its applications...")
        self.applicationsJob = self.logic.choicesJob()  # a worker that cannot start ends as a failed job
        self.applicationsJob.finished.connect(lambda result, job=self.applicationsJob: self.onApplications(job, result))
        self.timer.start()

    def onApplications(self, job, result):
        if job is not self.applicationsJob:
            return
        self.applicationsJob = None
        self.onIdle()
        answer = job.outputJson() if result.succeeded else None
        described = answer.get("applications") if isinstance(answer, dict) else None
        if not isinstance(described, dict) or not described:
            error = result.errorMessage.splitlines()[0] if result.errorMessage else _("no answer")
            self.ui.applicationComboBox.toolTip = _("The engine did not list its applications: {error}").format(
                error=error)
            self.networks.unanswered(error)
            self.losses.unanswered(error)
            return
        self.networks.byApplication = dict(answer.get("networks") or {})
        self.losses.byApplication = dict(answer.get("losses") or {})
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
        combo.toolTip = _("What the model learns (the engine's trainable applications, plug-ins included)")
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
        self.networks.request(application)
        self.losses.request(application)
        self.onApplication()

    def selectLoss(self, name: str):
        self.losses.select(name)

    def selectNetwork(self, name: str):
        self.networks.select(name)
