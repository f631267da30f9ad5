"""The Run panel's Refine section, shown when the chosen mode of the model's card takes clicks: the segment to
refine, two point lists (positive and negative) placed with Slicer's place mode, and the segment updated in
place after each point added, moved or removed (removing a point is the undo). The model stays loaded in a
warm worker (RefineLogic / WarmWorker): a click costs a model run, never a process start."""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _

from DeepMedRunLib.RefineLogic import RefineError, RefineLogic, RefineTarget, clickMode

POINT_EVENTS = ("PointAddedEvent", "PointRemovedEvent", "PointModifiedEvent", "PointPositionDefinedEvent",
                "PointPositionUndefinedEvent")
LIST_COLOURS = {True: (0.2, 0.85, 0.3), False: (0.95, 0.25, 0.2)}  # positive green, negative red


class RefineSection:
    """Widgets in a collapsible section after the panel's output section. ``panel``: the RunPanel (its model,
    input volume, output selector, device and status label)."""

    def __init__(self, panel, logicFactory=RefineLogic):
        import ctk

        self.panel, self.ui, self.scene = panel, panel.ui, panel.scene
        self.logicFactory = logicFactory
        self.logic = None                 # made on the first refine (the worker starts then)
        self.pointLists = {True: None, False: None}
        self.segmentationNode = None      # where the refined segments go (the output, or one made here)
        self._observations = []
        self.lastResponse = None
        self.refines = 0                  # results applied
        self.box = ctk.ctkCollapsibleButton()
        self.box.text = _("Refine with clicks")
        self.box.objectName = "refineCollapsibleButton"
        form = qt.QFormLayout(self.box)
        self.labelComboBox = qt.QComboBox()
        self.labelComboBox.toolTip = _("The segment the points refine (a label of the model)")
        form.addRow(_("Segment:"), self.labelComboBox)
        buttons = qt.QHBoxLayout()
        self.positiveButton = qt.QPushButton(_("Place positive points"))
        self.positiveButton.toolTip = _("Click inside the structure in the slice views (green points)")
        self.negativeButton = qt.QPushButton(_("Place negative points"))
        self.negativeButton.toolTip = _("Click where the segment leaks out (red points)")
        self.clearButton = qt.QPushButton(_("Clear points"))
        self.clearButton.toolTip = _("Remove every point; the segment keeps its last result")
        for button in (self.positiveButton, self.negativeButton, self.clearButton):
            buttons.addWidget(button)
        form.addRow(buttons)
        self.statusLabel = qt.QLabel(_("Place a point: each point added, moved or removed refines the segment."))
        self.statusLabel.wordWrap = True
        form.addRow(self.statusLabel)
        self.positiveButton.clicked.connect(lambda: self.startPlacing(True))
        self.negativeButton.clicked.connect(lambda: self.startPlacing(False))
        self.clearButton.clicked.connect(self.clearPoints)
        self.labelComboBox.currentIndexChanged.connect(lambda *args: self._forgetStart())
        layout = self.ui.outputCollapsibleButton.parentWidget().layout()
        layout.insertWidget(layout.indexOf(self.ui.outputCollapsibleButton) + 1, self.box)
        self.refreshTimer = qt.QTimer()   # several events of one user action make one refine (stopped when it fires)
        self.refreshTimer.interval = 30
        self.refreshTimer.timeout.connect(self.refineNow)
        self.pollTimer = qt.QTimer()
        self.pollTimer.interval = 50
        self.pollTimer.timeout.connect(self.poll)
        self.update()

    # ---- what is shown ---------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        model, mode = self.panel.currentModel(), self.panel.inputs.mode()
        return model is not None and mode is not None and mode is clickMode(model)

    def update(self) -> None:
        """Shown (and the Apply button hidden) when the chosen mode takes clicks; its labels listed."""
        active = self.active
        self.box.visible = active
        self.ui.applyButton.visible = not active
        if not active:
            self.stopPlacing()
            if self.logic is not None:  # another model or mode: the worker and its model go
                self.close()
            return
        labels = [entry["name"] for entry in self.panel.currentModel().card.label_dicts() if int(entry["value"])]
        if labels != [self.labelComboBox.itemText(i) for i in range(self.labelComboBox.count)]:
            self.labelComboBox.clear()
            self.labelComboBox.addItems(labels)
        ready = self.volume() is not None
        self.positiveButton.enabled = self.negativeButton.enabled = ready
        self.clearButton.enabled = ready and any(self._points())

    def volume(self):
        volumes = self.panel.inputs.volumes()
        return volumes[0] if volumes else None

    # ---- points --------------------------------------------------------------------------------------
    def pointList(self, positive: bool):
        """The panel's positive or negative point list (made, coloured and observed on first use)."""
        node = self.pointLists[positive]
        if node is not None and node.GetScene() is self.scene:
            return node
        name = _("DeepMed positive points") if positive else _("DeepMed negative points")
        node = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", self.scene.GenerateUniqueName(name))
        node.CreateDefaultDisplayNodes()
        node.GetDisplayNode().SetSelectedColor(*LIST_COLOURS[positive])
        node.GetDisplayNode().SetColor(*LIST_COLOURS[positive])
        node.SetControlPointLabelFormat("+%d" if positive else "-%d")
        for event in POINT_EVENTS:
            tag = node.AddObserver(getattr(slicer.vtkMRMLMarkupsNode, event), self.onPointsChanged)
            self._observations.append((node, tag))
        self.pointLists[positive] = node
        return node

    def startPlacing(self, positive: bool) -> None:
        """Slicer's place mode (persistent) into the positive or negative list: each click in a view adds a point."""
        markups = slicer.modules.markups.logic()
        markups.SetActiveList(self.pointList(positive))
        markups.StartPlaceMode(True)
        self.statusLabel.text = (_("Click inside the structure to add positive points.") if positive else
                                 _("Click outside the structure to add negative points."))

    def stopPlacing(self) -> None:
        appLogic = slicer.app.applicationLogic() if hasattr(slicer, "app") else None
        interaction = appLogic.GetInteractionNode() if appLogic is not None else None
        if interaction is not None and interaction.GetCurrentInteractionMode() == interaction.Place:
            interaction.SwitchToViewTransformMode()

    def clearPoints(self) -> None:
        for node in self._points():
            node.RemoveAllControlPoints()  # observers: no refine for an empty set (the segment stays)

    def _points(self):
        return [node for node in self.pointLists.values() if node is not None and node.GetScene() is self.scene]

    def onPointsChanged(self, caller=None, event=None) -> None:
        if self.active and self.volume() is not None:
            self.refreshTimer.start()
        self.clearButton.enabled = any(node.GetNumberOfControlPoints() for node in self._points())

    # ---- refining --------------------------------------------------------------------------------------
    def target(self) -> RefineTarget:
        volume = self.volume()
        chosen = self.ui.outputSelector.currentNode()
        if chosen is not None:
            self.segmentationNode = chosen
        elif self.segmentationNode is None or self.segmentationNode.GetScene() is not self.scene:
            from DeepMedLib import SceneBridge

            self.segmentationNode = SceneBridge.emptySegmentationNode(
                volume, f"{volume.GetName()} {self.panel.currentModel().title}")
        return RefineTarget(volume, self.segmentationNode, self.labelComboBox.currentText,
                            self.pointLists[True], self.pointLists[False])

    def refineNow(self) -> None:
        """Refine the chosen segment from all points now (an empty point set leaves the segment as it is)."""
        self.refreshTimer.stop()
        if not any(node.GetNumberOfControlPoints() for node in self._points()):
            return
        try:
            if self.logic is None:
                self.logic = self.logicFactory(device=self._device())
            self.logic.open(self.panel.currentModel())
            self.logic.refine(self.target(), self.onRefined)
            self.statusLabel.text = _("Refining...")
            self.pollTimer.start()
        except (RefineError, OSError, ValueError, RuntimeError) as error:  # never an exception into Slicer
            self.statusLabel.text = _("Could not refine: {error}").format(error=str(error).splitlines()[0])

    def poll(self) -> None:
        if self.logic is None:
            self.pollTimer.stop()
            return
        self.logic.poll()
        if not self.logic.worker.busy:
            self.pollTimer.stop()

    def onRefined(self, response: dict) -> None:
        self.lastResponse = response
        if response.get("ok"):
            self.refines += 1
            points = sum(node.GetNumberOfControlPoints() for node in self._points())
            self.statusLabel.text = _("Refined {label} from {points} point(s) in {seconds:.2f} s.").format(
                label=response.get("label", self.labelComboBox.currentText), points=points,
                seconds=float(response.get("seconds", 0.0)))
        else:
            self.statusLabel.text = _("Refine failed: {error}").format(error=response.get("error", "?"))

    def _device(self) -> str:
        return self.ui.deviceComboBox.currentText or "auto"  # the engine resolves auto (a GPU when there is one)

    def _forgetStart(self) -> None:
        if self.logic is not None:
            self.logic.forgetStart()

    # ---- life cycle --------------------------------------------------------------------------------------
    def close(self) -> None:
        """Scene closed or panel cleaned up: the worker ends, the observers go, new lists next time."""
        self.refreshTimer.stop()
        self.pollTimer.stop()
        for node, tag in self._observations:
            node.RemoveObserver(tag)
        self._observations = []
        self.pointLists = {True: None, False: None}
        self.segmentationNode = None
        if self.logic is not None:
            self.logic.close()
            self.logic = None
