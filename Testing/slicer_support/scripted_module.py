"""Stand-in for ``slicer.ScriptedLoadableModule`` (it belongs to the Slicer application, not slicer-core).

Only what the DeepMed module files use: the four base classes, ``resourcePath``, ``delayDisplay``.
"""

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
        import qt

        if parent is None:
            parent = qt.QWidget()
            parent.setLayout(qt.QVBoxLayout())
        self.parent = parent
        self.layout = parent.layout()
        self.moduleName = type(self).__name__[:-len("Widget")]

    def resourcePath(self, filename: str) -> str:
        moduleDir = os.path.dirname(sys.modules[type(self).__module__].__file__)
        return os.path.join(moduleDir, "Resources", filename)

    def setup(self):
        pass

    def cleanup(self):
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.parent = parent


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=0):
        logging.info(message)


def install() -> None:
    """Make ``from slicer.ScriptedLoadableModule import ...`` work."""
    import slicer

    module = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(module, cls.__name__, cls)
    sys.modules["slicer.ScriptedLoadableModule"] = module
    slicer.ScriptedLoadableModule = module
