"""The module widget's life cycle, shared by the three DeepMed modules (Slicer's scripted module template).

Slicer makes the widget and calls ``setup()`` once, ``enter()`` each time the module is shown, ``exit()``
when another one is, and ``cleanup()`` when the module is unloaded (Slicer exits). The panel state lives
in the module's parameter node (a ``parameterNodeWrapper`` bound to the .ui by ``SlicerParameterName``),
saved with the scene; closing the scene makes a new one. User preferences live in ``qt.QSettings``.
"""

from __future__ import annotations

import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

SETTINGS_GROUP = "DeepMed"


def preference(key: str, default=""):
    """A DeepMed user preference (``qt.QSettings``, key ``DeepMed/<key>``)."""
    import qt

    value = qt.QSettings().value(f"{SETTINGS_GROUP}/{key}")
    return default if value in (None, "") else value


def setPreference(key: str, value) -> None:
    import qt

    qt.QSettings().setValue(f"{SETTINGS_GROUP}/{key}", value)


def useRememberedLibrary() -> None:
    """The model library folder chosen in an earlier session (Segment panel), when it still exists."""
    import os

    from DeepMedLib import ModelLibrary

    folder = preference("LibraryFolder")
    if folder and os.path.isdir(folder):
        ModelLibrary.useLibraryFolder(folder, announce=False)


class DeepMedModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Subclasses set ``uiFile``, ``panelClass``, ``parameterNodeClass`` and ``logicClass``."""

    uiFile = panelClass = parameterNodeClass = logicClass = None

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self.panel = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        useRememberedLibrary()
        uiWidget = slicer.util.loadUI(self.resourcePath(self.uiFile))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.logicClass()
        self.panel = self.panelClass(self.ui, self.logic, slicer.mrmlScene)
        self.layout.addStretch(1)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def enter(self):
        self.initializeParameterNode()
        self.panel.enter()

    def exit(self):
        self.setParameterNode(None)

    def cleanup(self):
        """Slicer exits (or the module is unloaded): end what runs, as the panel decides."""
        self.removeObservers()
        self.setParameterNode(None)
        self.panel.cleanup()

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)
        self.panel.onSceneClosing()

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        if self._parameterNode is None:
            self.setParameterNode(self.parameterNodeClass(self.logic.getParameterNode()))

    def setParameterNode(self, parameterNode):
        if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
        self._parameterNode = parameterNode
        if parameterNode is not None:
            self._parameterNodeGuiTag = parameterNode.connectGui(self.ui)
        self.panel.setParameterNode(parameterNode)


__all__ = ["DeepMedModuleWidget", "preference", "setPreference", "vtk"]
