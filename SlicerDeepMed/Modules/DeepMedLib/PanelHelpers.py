"""Small pieces the three panels share (Qt, Slicer idiom: property-style access throughout)."""

from __future__ import annotations

import qt
import slicer

from DeepMedLib import Dependencies


def volumeSelector(scene, nodeTypes, toolTip: str = "", noneDisplay: str | None = None):
    """A qMRMLNodeComboBox on the scene for ``nodeTypes`` (optionally with a 'none' entry)."""
    selector = slicer.qMRMLNodeComboBox()
    selector.nodeTypes = list(nodeTypes)
    selector.showChildNodeTypes = False
    selector.noneEnabled = noneDisplay is not None
    if noneDisplay is not None:
        selector.noneDisplay = noneDisplay
    selector.addEnabled = False
    selector.removeEnabled = False
    selector.toolTip = toolTip
    selector.setMRMLScene(scene)
    return selector


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
    """The 'Dependencies' section: hidden when all is installed; otherwise says what and offers a button."""

    def __init__(self, ui, onChanged=None):
        self.ui, self.onChanged = ui, onChanged
        ui.installDependenciesButton.clicked.connect(self.install)
        self.update()

    @property
    def ready(self) -> bool:
        return not Dependencies.describeMissing()

    def update(self) -> None:
        message = Dependencies.describeMissing()
        self.ui.dependenciesCollapsibleButton.visible = bool(message)
        self.ui.dependenciesLabel.text = message

    def install(self) -> None:
        with slicer.util.tryWithErrorDisplay("Installing the dependencies failed.", waitCursor=True):
            installed = []
            if Dependencies.torchMissing():
                if not Dependencies.installTorch():
                    self.ui.dependenciesLabel.text = "PyTorch was not installed (declined)."
                    return
                installed.append("PyTorch")
            installed += Dependencies.installEngineDependencies(slicer.util.pip_install,
                                                                confirm=slicer.util.confirmOkCancelDisplay)
            if installed:
                # torch is never imported in Slicer's own process and every job starts a new worker process,
                # so what was just installed is used at once: no restart.
                slicer.util.infoDisplay("Installed: " + ", ".join(installed) + ". No restart needed: DeepMed runs "
                                        "models in new background processes.")
        self.update()
        if self.onChanged is not None:
            self.onChanged()
