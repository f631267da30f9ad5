"""Run the modules' real widget code under PySide6 offscreen (``../shared/SLICER_HEADLESS.md``, part 2).

Slicer's ``qt`` is PythonQt; with PySide6's ``true_property`` feature the same property-style code runs
here. What this harness provides, all in this one file:

* a ``qt`` module re-exporting QtCore/QtGui/QtWidgets, and a ``ctk`` module with two stand-ins;
* an import hook that compiles every DeepMed module with ``from __feature__ import true_property``;
* stand-ins for widgets of the Slicer application, kept thin and honest:
  ``ctkCollapsibleButton`` (a group box), ``ctkPathLineEdit`` (a line edit with ``currentPath``),
  ``qMRMLNodeComboBox`` (a combo box listing the nodes of the real slicer-core scene),
  ``qMRMLWidget`` (a widget with ``setMRMLScene``);
* ``slicer.util.loadUI`` / ``childWidgetVariables`` through ``QUiLoader``, and message boxes that
  record their text (``messages``) instead of blocking.
"""

import ast
import contextlib
import importlib.abc
import importlib.util
import inspect
import os
import re
import sys
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402
from PySide6.QtCore import Property, Signal  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402

FEATURE_LINE = "from __feature__ import true_property"
messages: list[tuple[str, str]] = []  # (kind, text) of every message box the modules showed
confirmAnswer = [True]


# ---- stand-ins for Slicer application widgets ----------------------------------------------------------
class qMRMLWidget(QtWidgets.QWidget):
    mrmlSceneChanged = Signal(object)

    def setMRMLScene(self, scene):
        self.mrmlSceneChanged.emit(scene)


class ctkCollapsibleButton(QtWidgets.QGroupBox):
    def _text(self):
        return self.title()

    def _setText(self, value):
        self.setTitle(value)

    text = Property(str, _text, _setText)


class ctkPathLineEdit(QtWidgets.QLineEdit):
    """A line edit whose text is ``currentPath``; ``filters`` / ``nameFilters`` are kept, not used."""

    currentPathChanged = Signal(str)
    Dirs, Files, Drives, Readable, Writable = 0x1, 0x2, 0x4, 0x10, 0x20  # as QDir::Filter

    def __init__(self, parent=None):
        super().__init__(parent)
        self.filters, self.nameFilters = self.Files, []
        self.textChanged.connect(self.currentPathChanged.emit)

    def _currentPath(self):
        return QtWidgets.QLineEdit.text(self)

    def _setCurrentPath(self, value):
        QtWidgets.QLineEdit.setText(self, value)

    currentPath = Property(str, _currentPath, _setCurrentPath)


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    """Lists the scene's nodes of ``nodeTypes``; the 'none' entry (``noneDisplay``) when ``noneEnabled``."""

    currentNodeChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._observers, self._nodes = None, [], []
        self.nodeTypes, self.showChildNodeTypes, self.noneEnabled = [], True, False
        self.noneDisplay, self.addEnabled, self.removeEnabled, self.renameEnabled = "None", False, False, False
        self.currentIndexChanged.connect(lambda index: self.currentNodeChanged.emit(self.currentNode()))

    def setMRMLScene(self, scene):
        for tag in self._observers:
            self._scene.RemoveObserver(tag)
        self._scene, self._observers = scene, []
        if scene is not None:
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent):
                self._observers.append(scene.AddObserver(event, lambda caller, event: self._refresh()))
        self._refresh()

    def _matches(self, node) -> bool:
        if node.GetHideFromEditors():
            return False
        if self.showChildNodeTypes:
            return any(node.IsA(t) for t in self.nodeTypes)
        return node.GetClassName() in self.nodeTypes

    def _refresh(self):
        current = self.currentNode()
        nodes = []
        if self._scene is not None:
            for index in range(self._scene.GetNumberOfNodes()):
                node = self._scene.GetNthNode(index)
                if self._matches(node):
                    nodes.append(node)
        self.blockSignals(True)
        self.clear()
        self._nodes = ([None] if self.noneEnabled else []) + nodes
        for node in self._nodes:
            self.addItem(self.noneDisplay if node is None else node.GetName())
        keep = current if current in self._nodes else (None if self.noneEnabled or not nodes else nodes[0])
        self.setCurrentIndex(self._nodes.index(keep) if keep in self._nodes else -1)
        self.blockSignals(False)
        if keep is not current:
            self.currentNodeChanged.emit(keep)

    def currentNode(self):
        index = self.currentIndex()
        return self._nodes[index] if 0 <= index < len(self._nodes) else None

    def setCurrentNode(self, node):
        self._refresh()
        self.setCurrentIndex(self._nodes.index(node))


STAND_INS = (qMRMLWidget, ctkCollapsibleButton, ctkPathLineEdit, qMRMLNodeComboBox)


# ---- the qt / ctk modules and slicer.util functions -----------------------------------------------------
def _qtModule() -> types.ModuleType:
    qt = types.ModuleType("qt")
    for source in (QtCore, QtGui, QtWidgets):
        for name in dir(source):
            if name.startswith("Q") or name == "Qt":
                setattr(qt, name, getattr(source, name))
    return qt


def loadUI(path: str):
    loader = QUiLoader()
    for cls in STAND_INS:
        loader.registerCustomWidget(cls)
    widget = loader.load(path)
    if widget is None:
        raise RuntimeError(f"{path}: QUiLoader could not load it: {loader.errorString()}")
    return widget


def childWidgetVariables(widget):
    names = types.SimpleNamespace()
    for child in widget.findChildren(QtCore.QObject):
        if child.objectName():
            setattr(names, child.objectName(), child)
    return names


@contextlib.contextmanager
def tryWithErrorDisplay(message="", waitCursor=False):
    try:
        yield
    except Exception as exc:
        messages.append(("error", f"{message}\n{exc}" if message else str(exc)))


def installSlicerApplicationParts() -> None:
    import slicer
    import slicer.util

    sys.modules["qt"] = _qtModule()
    ctk = types.ModuleType("ctk")
    ctk.ctkCollapsibleButton, ctk.ctkPathLineEdit = ctkCollapsibleButton, ctkPathLineEdit
    sys.modules["ctk"] = ctk
    slicer.qMRMLNodeComboBox = qMRMLNodeComboBox
    slicer.util.loadUI = loadUI
    slicer.util.childWidgetVariables = childWidgetVariables
    slicer.util.tryWithErrorDisplay = tryWithErrorDisplay
    slicer.util.errorDisplay = lambda text, *a, **k: messages.append(("error", text))
    slicer.util.infoDisplay = lambda text, *a, **k: messages.append(("info", text))
    slicer.util.confirmOkCancelDisplay = lambda text, *a, **k: messages.append(("confirm", text)) or confirmAnswer[0]
    slicer.app = types.SimpleNamespace(processEvents=QtWidgets.QApplication.processEvents,
                                       layoutManager=lambda: None)
    from slicer_support import scripted_module

    scripted_module.install()


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


def processEventsUntil(condition, timeout: float = 300.0) -> None:
    """Let the Qt event loop (the panels' QTimers) run until ``condition()`` or fail after ``timeout``."""
    import time

    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise TimeoutError("condition not met in time")
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.AllEvents, 50)
        time.sleep(0.02)
