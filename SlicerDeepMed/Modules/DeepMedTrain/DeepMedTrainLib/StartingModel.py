"""The Train panel's starting point: scratch (random weights) or a library model made for the chosen
application (fine-tuning keeps its network)."""

from __future__ import annotations

import qt  # noqa: F401  (widget code in property style: PythonQt, or the test harness's true_property)
from slicer.i18n import tr as _

from DeepMedLib import ModelLibrary


class StartingModel:
    """Owns ``ui.initModelComboBox`` ("scratch", then the library's models for the application) and the network
    combo's enabled state (the network choice applies to scratch only)."""

    def __init__(self, ui):
        self.ui = ui
        self.initModels = []          # the library models offered under "Start from:" (after "scratch")
        ui.initModelComboBox.currentIndexChanged.connect(self.onInitModelChanged)

    def refreshInitModels(self, *args):
        """'scratch', then the library's models whose card names the chosen application; the choice is kept
        while it is still offered."""
        combo = self.ui.initModelComboBox
        current = self.initModel()
        self.initModels = ModelLibrary.modelsFor(self.ui.applicationComboBox.currentText)
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(_("scratch"))
        for model in self.initModels:
            combo.addItem(f"{model.title} ({model.id})")
        ids = [model.id for model in self.initModels]
        combo.currentIndex = 1 + ids.index(current.id) if current is not None and current.id in ids else 0
        combo.blockSignals(False)
        combo.toolTip = _("scratch (random weights), or fine-tune one of your library's models made for "
                          "this application (its network; a new output head when the labels differ)")
        self.onInitModelChanged()

    def onInitModelChanged(self, *args):
        """A model to start from brings its network: the network choice applies to scratch only."""
        model = self.initModel()
        self.ui.networkComboBox.enabled = model is None
        self.ui.networkComboBox.toolTip = "" if model is None else \
            _("Fine-tuning keeps the network of {model} ({network})").format(
                model=model.id, network=model.card.network.name if model.card.network else "?")

    def initModel(self):
        """The library model the training starts from, or None (scratch)."""
        index = self.ui.initModelComboBox.currentIndex - 1
        return self.initModels[index] if 0 <= index < len(self.initModels) else None
