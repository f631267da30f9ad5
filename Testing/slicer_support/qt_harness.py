"""Run the modules' real widget code under PySide6 offscreen (``../shared/SLICER_HEADLESS.md``, part 2).

Slicer's ``qt`` is PythonQt; with PySide6's ``true_property`` feature the same property-style code runs
here. This file provides:

* a ``qt`` module re-exporting QtCore/QtGui/QtWidgets (``QFileDialog`` as PythonQt returns paths) and a
  ``ctk`` module;
* an import hook that compiles every DeepMed module with ``from __feature__ import true_property``;
* ``slicer.util.loadUI`` / ``childWidgetVariables`` through ``QUiLoader``;
* ``modules``: the module manager (``select`` a module: setup once, ``enter``/``exit`` on every switch;
  ``exitApplication``: ``cleanup``), ``slicer.ScriptedLoadableModule`` and ``slicer.parameterNodeWrapper``;
* ``uncaught``: exceptions that escaped a Qt slot (Slicer prints them in its Python console).

The widget and dialog stand-ins, each following a named real source, are in ``stand_ins.py``.
"""

import ast
import importlib.abc
import importlib.util
import inspect
import os
import re
import sys
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtUiTools import QUiLoader

FEATURE_LINE = "from __feature__ import true_property"
from slicer_support import stand_ins  # noqa: E402
from slicer_support.stand_ins import confirmAnswer, fileDialogAnswers, fileDialogCalls, messages  # noqa: E402,F401

uncaught: list[BaseException] = []  # exceptions raised out of Qt slots (Slicer prints them in its console)
modules = None                       # the ModuleManager of the running harness (select / exitApplication)


# ---- the qt / ctk modules and slicer.util functions -----------------------------------------------------
def _qtModule() -> types.ModuleType:
    qt = types.ModuleType("qt")
    for source in (QtCore, QtGui, QtWidgets):
        for name in dir(source):
            if name.startswith("Q") or name == "Qt":
                setattr(qt, name, getattr(source, name))
    qt.QFileDialog = stand_ins.QFileDialog
    return qt


def loadUI(path: str):
    """Slicer ``util.py`` ``loadUI``: the .ui file's top widget (QUiLoader knows the stand-ins)."""
    loader = QUiLoader()
    for cls in stand_ins.STAND_INS:
        loader.registerCustomWidget(cls)
    widget = loader.load(path)
    if widget is None:
        raise RuntimeError(f"{path}: QUiLoader could not load it: {loader.errorString()}")
    return widget


def childWidgetVariables(widget):
    """Slicer ``util.py`` ``childWidgetVariables``: every named child as an attribute."""
    names = types.SimpleNamespace()
    for child in widget.findChildren(QtCore.QObject):
        if child.objectName():
            setattr(names, child.objectName(), child)
    return names


def _recordUncaught(kind, value, trace):
    uncaught.append(value)
    sys.__excepthook__(kind, value, trace)


def installSlicerApplicationParts():
    """Install qt, ctk, the widget stand-ins, slicer.util's GUI functions, slicer.app, the module manager."""
    global modules
    import slicer
    import slicer.util

    sys.modules["qt"] = _qtModule()
    ctk = types.ModuleType("ctk")
    ctk.ctkCollapsibleButton, ctk.ctkPathLineEdit = stand_ins.ctkCollapsibleButton, stand_ins.ctkPathLineEdit
    sys.modules["ctk"] = ctk
    slicer.qMRMLNodeComboBox = stand_ins.qMRMLNodeComboBox
    slicer.qMRMLWidget = stand_ins.qMRMLWidget
    slicer.qSlicerScriptedLoadableModuleWidget = stand_ins.qSlicerScriptedLoadableModuleWidget
    slicer.util.loadUI = loadUI
    slicer.util.childWidgetVariables = childWidgetVariables
    for name in ("tryWithErrorDisplay", "errorDisplay", "infoDisplay", "confirmOkCancelDisplay"):
        setattr(slicer.util, name, getattr(stand_ins, name))
    from slicer_support import mrml_app

    slicer.app = types.SimpleNamespace(processEvents=QtWidgets.QApplication.processEvents,
                                       layoutManager=lambda: mrml_app.current and mrml_app.current.layoutManager,
                                       applicationLogic=lambda: mrml_app.current and mrml_app.current.appLogic,
                                       testingEnabled=lambda: False,
                                       setOverrideCursor=lambda cursor: None, restoreOverrideCursor=lambda: None)
    sys.excepthook = _recordUncaught
    from slicer_support import scripted_module

    modules = scripted_module.install()
    return modules


# ---- true_property for the modules' widget code ----------------------------------------------------------
def _withFeatureLine(source: str) -> str:
    """The source with the feature import after any ``from __future__`` imports (line numbers kept)."""
    tree = ast.parse(source)
    lastFuture = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            lastFuture = node.end_lineno
    lines = source.splitlines()
    lines[lastFuture:lastFuture] = [FEATURE_LINE]
    return "\n".join(lines) + "\n"


def usesQt(path: str) -> bool:
    """Panel files (``*Panel.py``) and any file importing ``qt`` drive Qt widgets."""
    if path.endswith("Panel.py"):
        return True
    with open(path, encoding="utf-8") as stream:
        return re.search(r"^(import qt\b|from qt import)", stream.read(), re.MULTILINE) is not None


class TruePropertyFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads every DeepMed module that drives Qt widgets with ``true_property`` on, as PythonQt behaves."""

    @staticmethod
    def candidate(name: str) -> bool:
        return name.split(".")[0].startswith("DeepMed")

    def find_spec(self, name, path=None, target=None):
        if not self.candidate(name):
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or not spec.origin or not spec.origin.endswith(".py") or not usesQt(spec.origin):
            return None
        return importlib.util.spec_from_file_location(name, spec.origin, loader=self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        with open(module.__spec__.origin, encoding="utf-8") as stream:
            source = _withFeatureLine(stream.read())
        exec(compile(source, module.__spec__.origin, "exec"), module.__dict__)


def _initialiseFeatureSafely() -> None:
    """PySide's first feature import reads the source of every loaded module; torch's ``torch._classes``
    answers ``inspect.unwrap`` with a RuntimeError, so such modules are hidden from it for that moment."""
    hidden = {}
    for name, module in list(sys.modules.items()):
        try:
            inspect.unwrap(module)
        except Exception:
            hidden[name] = sys.modules.pop(name)
    try:
        exec(compile(FEATURE_LINE, "<feature initialisation>", "exec"), {"__name__": "deepmed_feature_probe"})
    finally:
        sys.modules.update(hidden)


def install() -> QtWidgets.QApplication:
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    _initialiseFeatureSafely()
    installSlicerApplicationParts()
    if not any(isinstance(f, TruePropertyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, TruePropertyFinder())
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if TruePropertyFinder.candidate(name) and origin.endswith(".py") and usesQt(origin):
            del sys.modules[name]  # loaded earlier without the feature (e.g. by the logic tests)
    return app


def isolateSettings(folder) -> None:
    """``qt.QSettings()`` as in Slicer (organization NA-MIC, application Slicer), stored under ``folder``:
    a test never reads or writes the user's real settings."""
    QtCore.QCoreApplication.setOrganizationName("NA-MIC")
    QtCore.QCoreApplication.setApplicationName("Slicer")
    QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
    QtCore.QSettings.setPath(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope, str(folder))


def processEventsUntil(condition, timeout: float = 300.0) -> None:
    """Let the Qt event loop (the panels' QTimers) run until ``condition()`` or fail after ``timeout``."""
    import time

    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise TimeoutError("condition not met in time")
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.AllEvents, 50)
        time.sleep(0.02)
