"""Stand-ins for the Slicer application's widgets and ``slicer.util`` functions, as strict as the real ones.

Each class or function names the real source it follows (read in Slicer, CTK and PythonQt) and keeps the
behaviour the DeepMed modules rely on, including the parts that bite:

* ``ctkPathLineEdit`` validates its text against a regular expression built from ``nameFilters`` and emits
  ``currentPathChanged`` only for valid input (an empty field or a folder in a ``*.json`` field never emits);
  its Browse button opens a file dialog when ``filters`` has ``Files``, a folder dialog otherwise;
* ``qMRMLNodeComboBox`` offers "Create new ..." / "Delete current ..." unless told not to;
* ``tryWithErrorDisplay`` shows the error and re-raises it;
* ``QFileDialog``'s static functions return the path alone, as under PythonQt (PySide returns a tuple).
"""

from __future__ import annotations

import contextlib
import traceback
import weakref

import shiboken6
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Property, Signal

messages: list[tuple[str, str]] = []   # (kind, text) of every message box the modules showed
confirmAnswer = [True]                 # what the next confirmation dialogs answer
fileDialogAnswers: list[str] = []      # what the next file dialogs return ("" = cancelled)
fileDialogCalls: list[tuple[str, str]] = []  # (kind: open/save/folder, name filter) of every dialog opened


# ---- Qt / PythonQt ----------------------------------------------------------------------------------------
class QFileDialog(QtWidgets.QFileDialog):
    """PythonQt wraps ``QFileDialog::getOpenFileName`` & co. returning the ``QString`` alone (PythonQt's
    generated wrappers of qfiledialog.h); the next answer comes from ``fileDialogAnswers`` (never blocks)."""

    @staticmethod
    def _answer(kind: str, nameFilter: str = "") -> str:
        fileDialogCalls.append((kind, nameFilter))
        return fileDialogAnswers.pop(0) if fileDialogAnswers else ""

    @staticmethod
    def getOpenFileName(parent=None, caption="", directory="", nameFilter="", *args):
        return QFileDialog._answer("open", nameFilter)

    @staticmethod
    def getSaveFileName(parent=None, caption="", directory="", nameFilter="", *args):
        return QFileDialog._answer("save", nameFilter)

    @staticmethod
    def getExistingDirectory(parent=None, caption="", directory="", *args):
        return QFileDialog._answer("folder")


# ---- MRML widgets (Slicer Libs/MRML/Widgets) ---------------------------------------------------------------
class qMRMLWidget(QtWidgets.QWidget):
    """Follows Slicer ``Libs/MRML/Widgets/qMRMLWidget.cxx``: a widget with ``setMRMLScene``."""

    mrmlSceneChanged = Signal(object)

    def setMRMLScene(self, scene):
        self.mrmlSceneChanged.emit(scene)


def _refreshIfAlive(ref):
    widget = ref()
    if widget is not None and shiboken6.isValid(widget):
        widget._refresh()


class qSlicerScriptedLoadableModuleWidget(qMRMLWidget):
    """Follows Slicer ``Base/QTGUI/qSlicerAbstractModuleWidget.cxx``: the module widget's parent, with
    ``isEntered`` (true while the module is shown)."""

    isEntered = False


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    """Follows Slicer ``Libs/MRML/Widgets/qMRMLNodeComboBox.cxx`` on the real slicer-core scene.

    Defaults as there: ``noneEnabled`` False, ``addEnabled`` and ``removeEnabled`` True (so the list ends with
    "Create new <type>" and "Delete current <type>" items, which add / remove nodes), ``renameEnabled``
    False, ``showChildNodeTypes`` True, ``noneDisplay`` "None".
    """

    currentNodeChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._observers, self._nodes, self._actions = None, [], [], []
        self._nodeTypes, self._noneEnabled, self._addEnabled, self._removeEnabled = [], False, True, True
        self.showChildNodeTypes, self._noneDisplay, self.renameEnabled = True, "None", False
        self.activated.connect(self._onActivated)
        self.currentIndexChanged.connect(self._onIndexChanged)

    def _setter(name):
        def setter(self, value):
            setattr(self, name, value)
            self._refresh()
        return setter

    nodeTypes = property(lambda self: list(self._nodeTypes), _setter("_nodeTypes"))
    noneEnabled = property(lambda self: self._noneEnabled, _setter("_noneEnabled"))
    addEnabled = property(lambda self: self._addEnabled, _setter("_addEnabled"))
    removeEnabled = property(lambda self: self._removeEnabled, _setter("_removeEnabled"))
    noneDisplay = property(lambda self: self._noneDisplay, _setter("_noneDisplay"))
    del _setter

    def mrmlScene(self):
        return self._scene

    def setMRMLScene(self, scene):
        self._removeObservers()
        self._scene = scene
        if scene is not None:
            ref = weakref.ref(self)  # the scene must not keep the widget alive, nor call it once it is gone
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent):
                self._observers.append(scene.AddObserver(event, lambda caller, event: _refreshIfAlive(ref)))
        self._refresh()

    def _removeObservers(self):
        """As the C++ widget's qVTK connections end with it: no scene callback outlives the widget."""
        for tag in self._observers:
            self._scene.RemoveObserver(tag)
        self._observers = []

    def __del__(self):
        if getattr(self, "_scene", None) is not None:
            self._removeObservers()

    def _matches(self, node) -> bool:
        if node.GetHideFromEditors():
            return False
        if self.showChildNodeTypes:
            return any(node.IsA(t) for t in self._nodeTypes)
        return node.GetClassName() in self._nodeTypes

    def _typeLabel(self, nodeType: str) -> str:
        if self._scene is not None and nodeType and self._scene.GetTypeDisplayNameByClassName(nodeType):
            return self._scene.GetTypeDisplayNameByClassName(nodeType)
        return nodeType[len("vtkMRML"):-len("Node")] if nodeType.startswith("vtkMRML") else "node"

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
        self._nodes = ([None] if self._noneEnabled else []) + nodes
        for node in self._nodes:
            self.addItem(self.noneDisplay if node is None else node.GetName())
        self._actions = []
        if self._scene is not None:
            label = self._typeLabel(self._nodeTypes[0] if len(self._nodeTypes) == 1 else "")
            if self._addEnabled:
                self._actions += [(f"Create new {self._typeLabel(t)}", ("create", t)) for t in self._nodeTypes]
            if self._removeEnabled:
                self._actions.append((f"Delete current {label}", ("delete", None)))
        if self._actions:
            self.insertSeparator(self.count())
            for text, _ in self._actions:
                self.addItem(text)
        keep = current if current in self._nodes else (None if self._noneEnabled or not nodes else nodes[0])
        self.setCurrentIndex(self._nodes.index(keep) if keep in self._nodes else -1)
        self.blockSignals(False)
        if keep is not current:
            self.currentNodeChanged.emit(keep)

    def actionItems(self) -> list[str]:
        """The texts of the action items the user is offered (test helper)."""
        return [text for text, _ in self._actions]

    def _onActivated(self, index):
        actionIndex = index - len(self._nodes) - 1  # after the separator
        if 0 <= actionIndex < len(self._actions):
            kind, nodeType = self._actions[actionIndex][1]
            if kind == "create":
                node = self._scene.AddNewNodeByClass(nodeType)
                self.setCurrentNode(node)
            elif self.currentNode() is not None:
                self._scene.RemoveNode(self.currentNode())

    def _onIndexChanged(self, index):
        if 0 <= index < len(self._nodes) or index == -1:
            self.currentNodeChanged.emit(self.currentNode())

    def currentNode(self):
        index = self.currentIndex()
        return self._nodes[index] if 0 <= index < len(self._nodes) else None

    def setCurrentNode(self, node):
        self._refresh()
        self.setCurrentIndex(self._nodes.index(node) if node in self._nodes else -1)

    def nodeCount(self) -> int:
        return len([n for n in self._nodes if n is not None])


# ---- CTK widgets (CTK Libs/Widgets, Libs/Core) -------------------------------------------------------------
class ctkCollapsibleButton(QtWidgets.QGroupBox):
    """Follows CTK ``Libs/Widgets/ctkCollapsibleButton.cpp`` as far as the modules use it: ``text``,
    ``collapsed``."""

    def _text(self):
        return self.title()

    def _setText(self, value):
        self.setTitle(value)

    text = Property(str, _text, _setText)
    collapsed = False


_NAME_FILTER = QtCore.QRegularExpression(r"^(.*)\(([a-zA-Z0-9_.*? +;#\-\[\]@\{\}/!<>\$%&=^~:\|]*)\)$")
_WILDCARD = QtCore.QRegularExpression(r"^[\w\s\.\*\_\~\$\[\]]+$")
_EXTENSION = QtCore.QRegularExpression(r"\*\.(\w+)")


def nameFilterToExtensions(nameFilter: str) -> list[str]:
    """CTK ``Libs/Core/ctkUtils.cpp`` ``ctk::nameFilterToExtensions``: "Images (*.png *.jpg)" -> ["*.png", "*.jpg"]."""
    match = _NAME_FILTER.match(nameFilter)
    if not match.hasMatch():
        return [nameFilter] if _WILDCARD.match(nameFilter).hasMatch() else []
    return [part for part in match.captured(2).split(" ") if part]


def nameFiltersToRegularExpression(nameFilters: list[str]) -> str:
    """CTK ``ctkUtils.cpp`` ``nameFiltersToRegExpPattern``: one alternative ``.*\\.ext?$`` per ``*.ext``
    (other wildcards, "*" included, are dropped); ``.+`` when nothing is left."""
    parts = []
    for nameFilter in nameFilters:
        for extension in nameFilterToExtensions(nameFilter):
            match = _EXTENSION.match(extension)
            if match.hasMatch():
                parts.append(".*\\." + match.captured(1) + "?$")
    return "(" + "|".join(parts) + ")" if parts else ".+"


class ctkPathLineEdit(QtWidgets.QWidget):
    """Follows CTK ``Libs/Widgets/ctkPathLineEdit.cpp``: an editable combo box and a Browse button.

    * ``setNameFilters`` / ``setFilters`` rebuild a ``QRegularExpressionValidator`` from the name filters
      (``nameFiltersToRegularExpression``): typing what can never match is refused, and ``setCurrentPath``
      sets any text but it only counts as valid input when it matches.
    * ``currentPathChanged`` is emitted on text changes only while the input is valid;
      ``validInputChanged(bool)`` when validity flips. An empty field is never valid.
    * ``browse()``: ``Files`` in ``filters`` -> a file dialog (save dialog when ``Writable`` is set too) with
      the name filters; otherwise a folder dialog.
    * Defaults: ``filters`` = AllEntries | NoDotAndDotDot | Readable, ``nameFilters`` = [].
    """

    currentPathChanged = Signal(str)
    validInputChanged = Signal(bool)
    Dirs, Files, Drives, NoSymLinks, Readable, Writable, Executable = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
    AllEntries, NoDotAndDotDot = 0x7, 0x1000

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self._comboBox = QtWidgets.QComboBox(self)
        self._comboBox.setEditable(True)
        self._comboBox.setInsertPolicy(QtWidgets.QComboBox.NoInsert)
        self._lineEdit = self._comboBox.lineEdit()
        self._validator = QtGui.QRegularExpressionValidator(self)
        self._lineEdit.setValidator(self._validator)
        self._browseButton = QtWidgets.QToolButton(self)
        self._browseButton.setText("...")
        self._browseButton.setToolTip("Open a dialog")
        self._browseButton.clicked.connect(self.browse)
        layout.addWidget(self._comboBox)
        layout.addWidget(self._browseButton)
        self.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Fixed)
        self._filters, self._nameFilters, self._hasValidInput = self.AllEntries | self.NoDotAndDotDot | self.Readable, [], False
        self._updateFilter()
        self._lineEdit.textChanged.connect(self._updateHasValidInput)

    def _updateFilter(self):
        self._validator.setRegularExpression(QtCore.QRegularExpression(nameFiltersToRegularExpression(self._nameFilters)))

    def _setNameFilters(self, value):
        self._nameFilters = list(value)
        self._updateFilter()

    def _setFilters(self, value):
        self._filters = int(value)
        self._updateFilter()

    nameFilters = property(lambda self: list(self._nameFilters), _setNameFilters)
    filters = property(lambda self: self._filters, _setFilters)

    def _currentPath(self):
        return self._lineEdit.text()

    def _setCurrentPath(self, value):
        self._lineEdit.setText(value)

    currentPath = Property(str, _currentPath, _setCurrentPath, user=True)

    def comboBox(self):
        return self._comboBox

    def _updateHasValidInput(self, *args):
        old, self._hasValidInput = self._hasValidInput, self._lineEdit.hasAcceptableInput()
        if self._hasValidInput:
            self.currentPathChanged.emit(self._currentPath())
        if self._hasValidInput != old:
            self.validInputChanged.emit(self._hasValidInput)

    def browse(self):
        if self._filters & self.Files:
            kind = QFileDialog.getSaveFileName if self._filters & self.Writable else QFileDialog.getOpenFileName
            path = kind(self, "", self._currentPath(), ";;".join(self._nameFilters))
        else:
            path = QFileDialog.getExistingDirectory(self, "Select a directory...", self._currentPath())
        if path:
            self._setCurrentPath(path)

    # test helpers: what a user does
    def typePath(self, text: str) -> None:
        """Type ``text`` into the field key by key (the validator refuses keys that can never match)."""
        from PySide6.QtTest import QTest

        self._lineEdit.clear()
        QTest.keyClicks(self._lineEdit, text)

    def pressEnter(self) -> None:
        """Confirm the typed text (the line edit's ``editingFinished``, as Enter or leaving the field)."""
        from PySide6.QtTest import QTest

        QTest.keyClick(self._lineEdit, QtCore.Qt.Key_Return)

    def hasValidInput(self) -> bool:
        return self._hasValidInput


STAND_INS = (qMRMLWidget, ctkCollapsibleButton, ctkPathLineEdit, qMRMLNodeComboBox)


# ---- slicer.util (Slicer Base/Python/slicer/util.py) -------------------------------------------------------
@contextlib.contextmanager
def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
    """Slicer ``util.py`` ``tryWithErrorDisplay``: show "message\\n\\nerror" in an error box, then re-raise."""
    try:
        yield
    except Exception as exc:
        if show:
            errorDisplay(f"{message}\n\n{exc}" if message is not None else str(exc),
                         detailedText=traceback.format_exc())
        raise


def errorDisplay(text, *args, **kwargs):
    messages.append(("error", text))


def infoDisplay(text, *args, **kwargs):
    messages.append(("info", text))


def confirmOkCancelDisplay(text, *args, **kwargs):
    messages.append(("confirm", text))
    return confirmAnswer[0]
