"""Small pieces the three panels share (Qt, Slicer idiom: property-style access throughout)."""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _

from DeepMedLib import Dependencies


def configureNodeSelector(selector, scene, nodeTypes, toolTip: str | None = None, noneDisplay: str | None = None):
    """Set up a qMRMLNodeComboBox explicitly: Slicer's defaults offer "Create new ..." and "Delete current ..."
    (``addEnabled`` / ``removeEnabled`` are true), which these selectors must not."""
    selector.nodeTypes = list(nodeTypes)
    selector.showChildNodeTypes = False
    selector.noneEnabled = noneDisplay is not None
    if noneDisplay is not None:
        selector.noneDisplay = noneDisplay
    selector.addEnabled = False
    selector.removeEnabled = False
    selector.renameEnabled = False
    if toolTip is not None:
        selector.toolTip = toolTip
    selector.setMRMLScene(scene)
    return selector


def volumeSelector(scene, nodeTypes, toolTip: str = "", noneDisplay: str | None = None):
    """A new qMRMLNodeComboBox on the scene for ``nodeTypes`` (optionally with a 'none' entry)."""
    return configureNodeSelector(slicer.qMRMLNodeComboBox(), scene, nodeTypes, toolTip, noneDisplay)


def clearLayout(layout) -> None:
    while layout.count():
        item = layout.takeAt(0)
        if item.widget() is not None:
            item.widget().deleteLater()


def setBusy(progressBar, busy: bool, value: int = 0) -> None:
    """An indeterminate bar while busy; a plain percentage otherwise."""
    progressBar.maximum = 0 if busy else 100
    progressBar.value = 0 if busy else value


def pollTimer(callback, intervalMs: int = 200):
    timer = qt.QTimer()
    timer.interval = intervalMs
    timer.timeout.connect(callback)
    return timer


class DependencySection:
    """The 'Dependencies' section: what is missing with *Install dependencies*, and *Check installation*
    (a worker reports versions, devices and a test pass on the chosen device)."""

    def __init__(self, ui, onChanged=None, device=lambda: "auto", runner=None):
        self.ui, self.onChanged, self.device, self.runner = ui, onChanged, device, runner
        self.check = None
        self.installing = False  # pip's output pumps processEvents: a second click must find the buttons off
        self.timer = pollTimer(self.poll)
        ui.installDependenciesButton.clicked.connect(self.install)
        ui.checkInstallationButton.clicked.connect(self.onCheckInstallation)
        self.update()

    @property
    def ready(self) -> bool:
        return not Dependencies.describeMissing()

    def update(self) -> None:
        message = Dependencies.describeMissing()
        self.ui.dependenciesLabel.text = message or _("Everything DeepMed needs is installed.")
        self.ui.installDependenciesButton.visible = bool(message)
        self.ui.installDependenciesButton.enabled = not self.installing and not Dependencies.unsupportedPython()
        self.ui.checkInstallationButton.enabled = (self.check is None and not self.installing
                                                   and not Dependencies.unsupportedPython())
        self.ui.dependenciesCollapsibleButton.collapsed = not message and not self.ui.installReportLabel.text

    def install(self) -> None:
        if self.installing:
            return
        self.installing = True
        self.update()
        try:
            with slicer.util.tryWithErrorDisplay(_("Installing the dependencies failed."), waitCursor=True):
                installed = []
                if Dependencies.torchMissing():
                    if not Dependencies.installTorch(confirm=slicer.util.confirmOkCancelDisplay):
                        raise Dependencies.DependencyError(_("PyTorch was not installed (declined)."))
                    installed.append("PyTorch")
                installed += Dependencies.installEngineDependencies(slicer.util.pip_install,
                                                                    confirm=slicer.util.confirmOkCancelDisplay)
                if installed:
                    # torch is never imported in Slicer's own process and every job starts a new worker
                    # process, so what was just installed is used at once: no restart.
                    slicer.util.infoDisplay(_("Installed: {packages}. No restart needed: DeepMed runs models in new "
                                              "background processes.").format(packages=", ".join(installed)))
        finally:
            self.installing = False
            self.update()
            if self.onChanged is not None:
                self.onChanged()

    def onCheckInstallation(self) -> None:
        from DeepMedLib.InstallCheck import InstallCheck

        try:
            with slicer.util.tryWithErrorDisplay(_("Could not check the installation.")):
                self.check = InstallCheck(self.runner).start(self.device())
                self.check.finished.connect(self.onCheckFinished)
                self.ui.installReportLabel.text = _("Checking the installation on {device}...").format(
                    device=self.device())
                self.timer.start()
        finally:
            self.update()

    def poll(self) -> None:
        if self.check is not None:
            self.check.poll()

    def onCheckFinished(self, report, text: str) -> None:
        self.check = None
        self.timer.stop()
        self.ui.installReportLabel.text = text
        self.update()

    def cleanup(self) -> None:
        self.timer.stop()
        if self.check is not None:
            self.check.cancel()
