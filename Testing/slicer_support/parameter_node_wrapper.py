"""Stand-in for ``slicer.parameterNodeWrapper`` (part of the Slicer application, not of slicer-core).

Follows Slicer ``Base/Python/slicer/parameterNodeWrapper/``: ``wrapper.py`` (typed properties over a
``vtkMRMLScriptedModuleNode``, ``connectGui`` / ``disconnectGui`` through the ``SlicerParameterName``
dynamic property), ``serializers.py`` (int/float/str/bool/pathlib.Path as parameter strings, nodes as node
references; values are validated on every write), ``validators.py`` (``WithinRange``, ``Minimum``,
``Maximum``, ``Choice``) and ``guiConnectors.py`` for the widgets DeepMed binds, matched by exact type as
there: QCheckBox-bool, QSpinBox-int, QDoubleSpinBox-float, QComboBox-(str with ``Choice``: the items are
replaced by the choices), QLineEdit-str, ctkPathLineEdit-pathlib.Path, qMRMLNodeComboBox-node.
Unbounded spin boxes get the real connector's huge range, as in Slicer. Like the real connectors this file
is written in PythonQt's property style: the harness loads it with ``true_property``.
"""

from __future__ import annotations

import pathlib
import typing

SlicerParameterNamePropertyName = "SlicerParameterName"


# ---- validators.py ------------------------------------------------------------------------------------
class Validator:
    def validate(self, value) -> None:
        raise NotImplementedError


class WithinRange(Validator):
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")


class Minimum(Validator):
    def __init__(self, minimum):
        self.minimum = minimum

    def validate(self, value):
        if value < self.minimum:
            raise ValueError(f"Value must be greater than {self.minimum}, is {value}")


class Maximum(Validator):
    def __init__(self, maximum):
        self.maximum = maximum

    def validate(self, value):
        if value > self.maximum:
            raise ValueError(f"Value must be greater than {self.maximum}, is {value}")


class Choice(Validator):
    def __init__(self, choices):
        self.choices = choices

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")


def _split(datatype):
    if typing.get_origin(datatype) is typing.Annotated:
        base, *annotations = typing.get_args(datatype)
        return base, list(annotations)
    return datatype, []


def _first(annotations, cls):
    return next((a for a in annotations if isinstance(a, cls)), None)


# ---- serializers.py -----------------------------------------------------------------------------------
PATH_TYPES = (pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath)


def _isNodeType(datatype) -> bool:
    import slicer

    return isinstance(datatype, type) and issubclass(datatype, slicer.vtkMRMLNode)


class _Parameter:
    def __init__(self, name, datatype, default):
        self.name, self.datatype = name, datatype
        self.type, annotations = _split(datatype)
        self.validators = [a for a in annotations if isinstance(a, Validator)]
        if typing.get_origin(self.type) is list:
            (elementType,) = typing.get_args(self.type)
            self.element = _Parameter(name, elementType, _MISSING)
            self.default = list(default) if default is not _MISSING else []
            return
        self.element = None
        if not (self.type in (int, float, str, bool) or self.type in PATH_TYPES or _isNodeType(self.type)):
            raise Exception(f"Unable to create serializer for member {name} of type {datatype}")
        self.default = default if default is not _MISSING else self._typeDefault()

    def _typeDefault(self):
        return None if _isNodeType(self.type) else self.type()

    def isIn(self, node) -> bool:
        return node.HasParameter(f"{self.name}.len" if self.element is not None else self.name)

    # ListSerializer (serializers.py): the length in "<name>.len", element i as parameter / reference "<name>.i".
    # Here read() gives a plain list (the real one an ObservedList that writes back on mutation): assign it.
    def _writeList(self, node, values):
        old = int(node.GetParameter(f"{self.name}.len") or 0)
        for index, value in enumerate(values):
            self.element.name = f"{self.name}.{index}"
            self.element.write(node, value)
        for index in range(len(values), old):
            node.SetParameter(f"{self.name}.{index}", "")
            node.RemoveNodeReferenceIDs(f"{self.name}.{index}")
        node.SetParameter(f"{self.name}.len", str(len(values)))

    def _readList(self, node):
        if not node.HasParameter(f"{self.name}.len"):
            self._writeList(node, self.default)
        values = []
        for index in range(int(node.GetParameter(f"{self.name}.len") or 0)):
            self.element.name = f"{self.name}.{index}"
            values.append(self.element.read(node))
        return values

    def validate(self, value):
        if _isNodeType(self.type):
            if value is not None and not isinstance(value, self.type):
                raise TypeError(f"Value must be of type '{self.type}', is type '{type(value)}' value '{value}'")
        else:
            allowed = (int, float) if self.type is float else self.type
            if value is None or not isinstance(value, allowed) or (self.type is int and isinstance(value, bool)):
                raise TypeError(f"Value must be of type '{allowed}', is type '{type(value)}' value '{value}'")
        for validator in self.validators:
            validator.validate(value)

    def write(self, node, value):
        if self.element is not None:
            for item in value:
                self.element.validate(item)
            self._writeList(node, list(value))
            return
        self.validate(value)
        if _isNodeType(self.type):
            node.SetParameter(self.name, "")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
        elif self.type is bool:
            node.SetParameter(self.name, "True" if value else "False")
        else:
            node.SetParameter(self.name, str(value))

    def read(self, node):
        if self.element is not None:
            return self._readList(node)
        if not node.HasParameter(self.name):
            self.write(node, self.default)
        if _isNodeType(self.type):
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        return text == "True" if self.type is bool else self.type(text)


_MISSING = object()


# ---- guiConnectors.py ---------------------------------------------------------------------------------
class _Connector:
    signal = ""

    def __init__(self, widget, parameter):
        self.widget, self.parameter, self._callback = widget, parameter, None

    def onChanged(self, callback):
        signal = getattr(self.widget, self.signal)
        if callback is None and self._callback is not None:
            signal.disconnect(self._changed)
        elif callback is not None and self._callback is None:
            signal.connect(self._changed)
        self._callback = callback

    def _changed(self, *args):
        if self._callback:
            self._callback()


class _CheckBox(_Connector):
    signal = "stateChanged"
    read = lambda self: self.widget.checked  # noqa: E731
    write = lambda self, value: setattr(self.widget, "checked", bool(value))  # noqa: E731


class _SpinBox(_Connector):
    signal = "valueChanged"

    def __init__(self, widget, parameter):
        super().__init__(widget, parameter)
        _, annotations = _split(parameter.datatype)
        withinRange, minimum, maximum = (_first(annotations, c) for c in (WithinRange, Minimum, Maximum))
        huge = 2 ** 31 - 1 if parameter.type is int else float("inf")
        if parameter.type is int and isinstance(widget, _qt().QDoubleSpinBox):
            widget.decimals = 0
        widget.minimum = withinRange.minimum if withinRange else minimum.minimum if minimum else -huge
        widget.maximum = withinRange.maximum if withinRange else maximum.maximum if maximum else huge

    def read(self):
        return self.parameter.type(self.widget.value)

    def write(self, value):
        self.widget.value = value


class _ComboBox(_Connector):
    signal = "currentIndexChanged"

    def __init__(self, widget, parameter):
        super().__init__(widget, parameter)
        choice = _first(_split(parameter.datatype)[1], Choice)
        if choice is None:
            raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")
        self.choices = list(choice.choices)
        widget.clear()
        for value in self.choices:
            widget.addItem(str(value))

    def read(self):
        return self.choices[self.widget.currentIndex]

    def write(self, value):
        if value not in self.choices:
            raise ValueError(f"Unable to find value {value} in choices {self.choices}")
        self.widget.currentIndex = self.choices.index(value)


class _LineEdit(_Connector):
    signal = "textChanged"
    read = lambda self: self.widget.text  # noqa: E731

    def write(self, value):
        if value != self.widget.text:
            self.widget.text = value


class _PathLineEdit(_Connector):
    signal = "currentPathChanged"
    read = lambda self: self.parameter.type(self.widget.currentPath)  # noqa: E731
    write = lambda self, value: setattr(self.widget, "currentPath", str(value))  # noqa: E731


class _NodeComboBox(_Connector):
    signal = "currentNodeChanged"
    read = lambda self: self.widget.currentNode()  # noqa: E731
    write = lambda self, value: self.widget.setCurrentNode(value)  # noqa: E731


def _qt():
    from PySide6 import QtWidgets

    return QtWidgets


def createGuiConnector(widget, parameter) -> _Connector:
    import ctk
    import slicer

    qt, kind = _qt(), type(widget)
    if parameter.type is bool and kind is qt.QCheckBox:
        return _CheckBox(widget, parameter)
    if (parameter.type is int and kind is qt.QSpinBox) or (parameter.type in (int, float) and kind is qt.QDoubleSpinBox):
        return _SpinBox(widget, parameter)
    if parameter.type in (int, float, str, bool) and kind is qt.QComboBox:
        return _ComboBox(widget, parameter)
    if parameter.type is str and kind is qt.QLineEdit:
        return _LineEdit(widget, parameter)
    if parameter.type in PATH_TYPES and kind is ctk.ctkPathLineEdit:
        return _PathLineEdit(widget, parameter)
    if _isNodeType(parameter.type) and kind is slicer.qMRMLNodeComboBox:
        return _NodeComboBox(widget, parameter)
    raise RuntimeError(f"Unable to create GUI connector from datatype '{parameter.datatype}' to widget type '{kind}'.")


# ---- wrapper.py ---------------------------------------------------------------------------------------
def parameterNodeWrapper(classtype=None):
    def wrap(cls):
        hints = typing.get_type_hints(cls, include_extras=True)
        parameters = {}
        for name, datatype in hints.items():
            parameters[name] = _Parameter(name, datatype, getattr(cls, name, _MISSING))
            setattr(cls, name, property(lambda self, p=parameters[name]: p.read(self.parameterNode),
                                        lambda self, value, p=parameters[name]: p.write(self.parameterNode, value)))
        cls.allParameters = parameters
        cls._is_parameter_node_wrapper = True
        cls.__init__ = _init
        cls.getValue = lambda self, name: getattr(self, _checked(self, name))
        cls.setValue = lambda self, name, value: setattr(self, _checked(self, name), value)
        cls.connectGui = _connectGui
        cls.disconnectGui = _disconnectGui
        cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback, priority)
        cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
        cls.StartModify = lambda self: self.parameterNode.StartModify()
        cls.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
        cls.Modified = lambda self: self.parameterNode.Modified()
        return cls

    return wrap if classtype is None else wrap(classtype)


def _checked(self, name):
    if name not in self.allParameters:
        raise ValueError(f"Cannot find a param with the given name: {name}")
    return name


def _init(self, parameterNode, prefix=None):
    self.parameterNode = parameterNode
    self._guis, self._guiObservers, self._nextTag, self._updatingGui = {}, {}, 0, False
    for parameter in self.allParameters.values():
        if not parameter.isIn(parameterNode):
            parameter.write(parameterNode, parameter.default)


def _connectGui(self, gui):
    """Bind every child widget whose ``SlicerParameterName`` names a parameter; returns a tag."""
    qt = _qt()
    widgets = gui.findChildren(qt.QWidget) if isinstance(gui, qt.QWidget) else list(vars(gui).values())
    mapping = {}
    for widget in widgets:
        name = widget.property(SlicerParameterNamePropertyName) if isinstance(widget, qt.QWidget) else None
        if name:
            _checked(self, name)
            mapping[name] = createGuiConnector(widget, self.allParameters[name])
    tag, self._nextTag = self._nextTag, self._nextTag + 1
    self._guis[tag] = mapping
    for name, connector in mapping.items():
        connector.write(getattr(self, name))
        connector.onChanged(lambda name=name, connector=connector: self._updatingGui or setattr(self, name, connector.read()))
    self._guiObservers[tag] = self.parameterNode.AddObserver(
        __import__("vtk").vtkCommand.ModifiedEvent, lambda caller, event: _updateGui(self))
    return tag


def _updateGui(self):
    if self._updatingGui:
        return
    self._updatingGui = True
    try:
        for mapping in self._guis.values():
            for name, connector in mapping.items():
                connector.write(getattr(self, name))
    finally:
        self._updatingGui = False


def _disconnectGui(self, tag):
    for connector in self._guis.pop(tag, {}).values():
        connector.onChanged(None)
    if tag in self._guiObservers:
        self.parameterNode.RemoveObserver(self._guiObservers.pop(tag))


def install() -> None:
    """Make ``from slicer.parameterNodeWrapper import ...`` work: this file, loaded with true_property."""
    import sys
    import types

    import slicer

    from slicer_support.qt_harness import _initialiseFeatureSafely, _withFeatureLine

    if "slicer.parameterNodeWrapper" in sys.modules:
        return
    _initialiseFeatureSafely()
    module = types.ModuleType("slicer.parameterNodeWrapper")
    module.__file__ = __file__
    with open(__file__, encoding="utf-8") as stream:
        exec(compile(_withFeatureLine(stream.read()), __file__, "exec"), module.__dict__)
    sys.modules["slicer.parameterNodeWrapper"] = module
    slicer.parameterNodeWrapper = module
