"""The Run panel's mode chooser and the inputs of the chosen mode, from the model's card: one volume selector
per input channel (twice, cases A and B, for a pair mode, plus the number of steps), or a spin box per
condition (with the trained range) and a seed for a model that takes no image."""

from __future__ import annotations

import qt
from slicer.i18n import tr as _

from DeepMedLib import Outputs
from DeepMedLib.PanelHelpers import clearLayout, configureNodeSelector, volumeSelector


class ModeInputs:
    """Owns ``ui.modeComboBox`` and the widgets in ``ui.inputsFrame``; ``onChanged()`` after any change."""

    def __init__(self, ui, scene, onChanged):
        self.ui, self.scene, self.onChanged = ui, scene, onChanged
        self.layout = qt.QFormLayout(ui.inputsFrame)
        self.model = None
        self.key = None            # what the widgets were made for (a model installed again may differ)
        self.selectors = []        # volume selectors, case A's channels then case B's
        self.conditionBoxes = []   # one spin box per condition of a conditional generator
        self.stepsBox = None       # interpolation steps (pair modes)
        self.seedBox = None        # random seed (modes without images)
        ui.modeComboBox.currentIndexChanged.connect(self.onModeChanged)

    def showModel(self, model) -> None:
        """The model chosen in the panel: its modes and the first mode's inputs (kept when nothing changed)."""
        self.model = model
        if model is not None and self._key(model) == self.key:
            return
        modes = model.modes if model is not None else []
        combo = self.ui.modeComboBox
        combo.blockSignals(True)
        combo.clear()
        for mode in modes:
            combo.addItem(mode.name)
            combo.setItemData(combo.count - 1, mode.description or "", qt.Qt.ToolTipRole)
        combo.currentIndex = 0 if modes else -1
        combo.blockSignals(False)
        self.ui.modeComboBox.visible = self.ui.modeLabel.visible = len(modes) > 1
        self.build()

    def mode(self):
        if self.model is None:
            return None
        index = max(self.ui.modeComboBox.currentIndex, 0)
        return self.model.modes[index] if index < len(self.model.modes) else self.model.modes[0]

    def onModeChanged(self, *args) -> None:
        if self.model is not None:
            self.build()
            self.onChanged()

    def build(self) -> None:
        clearLayout(self.layout)
        self.selectors, self.conditionBoxes = [], []
        self.stepsBox = self.seedBox = None
        self.key = self._key(self.model) if self.model is not None else None
        if self.model is None:
            return
        mode = self.mode()
        for case in {"images": [""], "clicks": [""], "pair": ["A ", "B "]}.get(mode.inputs, []):
            for channel in self.model.input_names:
                toolTip = (_("Volume for the {channel} input of case {case}") if case else
                           _("Volume for the {channel} input")).format(channel=channel, case=case.strip())
                selector = volumeSelector(self.scene, ["vtkMRMLScalarVolumeNode"], toolTip)
                selector.currentNodeChanged.connect(lambda *args: self.onChanged())
                self.layout.addRow(f"{case}{channel}:", selector)
                self.selectors.append(selector)
        if mode.inputs == "conditions":
            self.conditionBoxes = [self._conditionBox(condition) for condition in self.model.conditions]
        if mode.inputs == "pair":
            self.stepsBox = self._spinBox(_("Steps:"), 2, 100, 8, _("Number of images from case A to case B"))
        if mode.inputs in ("none", "conditions"):
            self.seedBox = self._spinBox(_("Seed:"), 0, 2**31 - 1, 0,
                                         _("Random seed: the same seed gives the same image"))
        configureNodeSelector(self.ui.outputSelector, self.scene, [Outputs.nodeClass(mode.output_kind)],
                              noneDisplay=_("Create new"))
        self.ui.keepLargestCheckBox.enabled = mode.output_kind == "label_map"  # components of labels only
        self.ui.ttaCheckBox.enabled = mode.output_kind in ("label_map", "scalar_volume")  # voxel-wise outputs

    def ready(self) -> bool:
        """A volume chosen for every selector (a mode without images is ready at once)."""
        mode = self.mode()
        if mode is None:
            return False
        needsVolumes = mode.inputs in ("images", "pair", "clicks")
        return (bool(self.selectors) or not needsVolumes) and all(s.currentNode() is not None for s in self.selectors)

    def volumes(self) -> list:
        return [selector.currentNode() for selector in self.selectors]

    def runOptions(self) -> dict:
        """The logic's ``mode``/``condition``/``steps``/``seed`` for the chosen mode."""
        return {"mode": self.mode().name if len(self.model.modes) > 1 else None,
                "condition": [box.value for box in self.conditionBoxes] or None,
                "steps": self.stepsBox.value if self.stepsBox is not None else None,
                "seed": self.seedBox.value if self.seedBox is not None else None}

    @staticmethod
    def _key(model):
        return (model.id, repr(model.modes), repr(model.input_names), repr(model.conditions))

    def _conditionBox(self, condition):
        box = qt.QDoubleSpinBox()
        low, high = condition.min, condition.max
        bounded = low is not None and high is not None
        box.decimals = 3
        box.minimum = low if low is not None else -1e6
        box.maximum = high if high is not None else 1e6
        box.value = (low + high) / 2 if bounded else 0.0
        box.singleStep = (high - low) / 20 if bounded and high > low else 0.1
        unit = f" [{condition.unit}]" if condition.unit else ""
        box.toolTip = _("{condition}: the value the generated image should show").format(
            condition=f"{condition.name}{unit}")
        if bounded:
            box.toolTip += " " + _("(trained on {low} to {high})").format(low=f"{low:g}", high=f"{high:g}")
        self.layout.addRow(f"{condition.name}{unit}:", box)
        return box

    def _spinBox(self, label: str, low: int, high: int, value: int, toolTip: str):
        box = qt.QSpinBox()
        box.minimum, box.maximum, box.value, box.toolTip = low, high, value, toolTip
        self.layout.addRow(label, box)
        return box
