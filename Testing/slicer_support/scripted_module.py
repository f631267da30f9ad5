"""Stand-in for ``slicer.ScriptedLoadableModule`` and the module manager that drives the widgets.

Follows Slicer ``Base/Python/slicer/ScriptedLoadableModule.py`` (the four base classes, ``resourcePath``,
``getParameterNode``) and ``Base/QTGUI/qSlicerScriptedLoadableModuleWidget.cxx`` with the module panel:
the widget is made and ``setup()`` once, the first time its module is selected; ``enter()`` runs every time
the module is selected and ``exit()`` every time another one is; ``cleanup()`` runs when the module is
unloaded (``qSlicerModuleManager::moduleAboutToBeUnloaded``, i.e. when Slicer exits).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import types
import unittest


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        import slicer

        if parent is None:
            parent = slicer.qSlicerScriptedLoadableModuleWidget()
            import qt

            parent.setLayout(qt.QVBoxLayout())
            parent.setMRMLScene(slicer.mrmlScene)
        self.parent = parent
        self.layout = parent.layout()
        self.moduleName = type(self).__name__[:-len("Widget")]

    def resourcePath(self, filename: str) -> str:
        moduleDir = os.path.dirname(sys.modules[type(self).__module__].__file__)
        return os.path.join(moduleDir, "Resources", filename)

    def setup(self):
        pass

    def enter(self):
        pass

    def exit(self):
        pass

    def cleanup(self):
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.parent = parent
        self.moduleName = type(self).__name__[:-len("Logic")] if type(self).__name__.endswith("Logic") else type(self).__name__
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        import slicer

        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is not None:
            if node.GetAttribute("ModuleName") != self.moduleName:
                node.SetAttribute("ModuleName", self.moduleName)
            return node
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(scene.GenerateUniqueName(self.moduleName))
        return scene.AddNode(node)


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=0):
        logging.info(message)


class ModuleManager:
    """What the module panel and the module manager do with scripted module widgets."""

    def __init__(self):
        self.widgets: dict[str, ScriptedLoadableModuleWidget] = {}
        self.current: str | None = None

    def select(self, moduleName: str):
        """The user picks ``moduleName`` in the module selector: returns its (entered) widget."""
        if self.current == moduleName:
            return self.widgets[moduleName]
        if self.current is not None:
            previous = self.widgets[self.current]
            previous.parent.isEntered = False
            previous.exit()
        widget = self.widgets.get(moduleName)
        if widget is None:
            module = importlib.import_module(moduleName)
            widget = getattr(module, f"{moduleName}Widget")()
            widget.setup()
            self.widgets[moduleName] = widget
        self.current = moduleName
        widget.parent.isEntered = True
        widget.enter()
        return widget

    def exitApplication(self) -> None:
        """Slicer exits: every module is unloaded (``cleanup()``); ``exit()`` is not to be counted on."""
        self.current = None
        for widget in self.widgets.values():
            widget.cleanup()
        self.widgets.clear()


def install() -> ModuleManager:
    """Make ``from slicer.ScriptedLoadableModule import ...`` work; returns a fresh module manager."""
    import slicer

    module = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(module, cls.__name__, cls)
    sys.modules["slicer.ScriptedLoadableModule"] = module
    slicer.ScriptedLoadableModule = module
    from slicer_support import i18n, parameter_node_wrapper

    parameter_node_wrapper.install()
    i18n.install()
    return ModuleManager()
