"""The three panels under a pseudo-translation (Slicer asks ``slicer.app.translate`` for every ``_()`` text):
what the code sets (status lines, tooltips, combo items, table headers, message boxes) comes out translated,
placeholders filled after translation, and the panels still work (buttons enable, a run starts and cancels,
a bad setting is refused). PySide6 offscreen, real .ui files, real workers."""

import pytest
import slicer

from DeepMedLib import Dependencies
from DeepMedLib.SelfTestData import syntheticCase, writeSyntheticDataset

pytestmark = pytest.mark.gui


@pytest.fixture
def contexts(qtHarness, monkeypatch):
    """Every text is translated to ``⟦text⟧`` (placeholders kept, as a real translation must); the contexts
    asked for are recorded."""
    asked = set()

    def pseudoTranslate(context, text):
        asked.add(context)
        return f"⟦{text}⟧"

    monkeypatch.setattr(slicer.app, "translate", pseudoTranslate, raising=False)
    return asked


def test_run_panel_texts_are_translated_and_a_run_still_starts_and_cancels(contexts, openPanel, qtHarness, scene):
    panel = openPanel("DeepMedRun")
    ui = panel.ui
    description = ui.modelDescriptionLabel.text()
    assert "⟦Inputs: MR" in description and "⟦Labels: box, core⟧" in description
    assert ui.applyButton.text() == "⟦Segment⟧" and not ui.applyButton.isEnabled()
    assert ui.applyButton.toolTip() == "⟦Select a volume for every input⟧"
    assert ui.outputSelector.noneDisplay == "⟦Create new⟧"
    assert panel.panel.inputSelectors[0].toolTip() == "⟦Volume for the MR input⟧"
    syntheticCase(scene, seed=3)
    assert ui.applyButton.isEnabled() and ui.applyButton.toolTip() == "⟦Run the model on the input volumes⟧"
    before = scene.GetNumberOfNodes()
    ui.applyButton.click()
    assert ui.statusLabel.text().startswith("⟦Running ") and ui.cancelButton.isEnabled()
    ui.cancelButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None, timeout=60)
    assert ui.statusLabel.text() == "⟦Cancelled; the scene is unchanged.⟧" and scene.GetNumberOfNodes() == before
    assert ui.applyButton.isEnabled()
    qtHarness.confirmAnswer[0] = False
    ui.removeModelButton.click()
    kind, text = qtHarness.messages[-1]
    assert kind == "confirm" and text.startswith("⟦Remove the model 'boxes' from your library (") and "{" not in text
    assert ui.modelComboBox.count() == 1  # declined: still there
    assert {"DeepMedRunLib.RunPanel", "DeepMedRunLib.ModeInputs", "DeepMedLib.Outputs",
            "DeepMedLib.ModelLibrary"} <= contexts


def test_train_panel_texts_are_translated_and_it_still_checks_and_refuses(contexts, openPanel, qtHarness, tmp_path):
    panel = openPanel("DeepMedTrain")
    ui = panel.ui
    assert ui.initModelComboBox.itemText(0) == "⟦scratch⟧"
    assert ui.applicationComboBox.toolTip().startswith("⟦What the model learns")
    assert ui.publishButton.toolTip() == "⟦Train a model first⟧"
    assert ui.dependenciesLabel.text().startswith("⟦") and not ui.trainButton.isEnabled()
    if not Dependencies.describeMissing():
        assert ui.dependenciesLabel.text() == "⟦Everything DeepMed needs is installed.⟧"
    manifest = writeSyntheticDataset(tmp_path / "boxes")
    ui.datasetPathLineEdit.typePath(str(manifest))
    assert ui.trainButton.isEnabled() and ui.checkDatasetButton.isEnabled()
    ui.checkDatasetButton.click()
    assert ui.datasetSummaryLabel.text() == "⟦Checking every case...⟧"
    qtHarness.processEventsUntil(lambda: panel.panel.checkRun is None, timeout=120)
    summary = ui.datasetSummaryLabel.text().splitlines()
    assert summary[0] == "⟦4 case(s), 4 with labels⟧" and all(line.startswith("⟦") for line in summary)
    ui.extraSettingsLineEdit.setText("training.batch_size")
    ui.trainButton.click()
    kind, text = qtHarness.messages[-1]
    assert kind == "error" and text.startswith("⟦Could not start the training.⟧")
    assert "⟦'training.batch_size'" in text  # the key, in a message translated whole
    assert panel.panel.run is None and ui.trainButton.isEnabled()
    assert {"DeepMedTrainLib.TrainPanel", "DeepMedTrainLib.EngineChoices", "DeepMedLib.PanelHelpers"} <= contexts


def test_data_panel_texts_are_translated_and_cases_still_add_and_remove(contexts, openPanel, qtHarness, scene):
    panel = openPanel("DeepMedData")
    ui = panel.ui
    assert [ui.casesTable.horizontalHeaderItem(c).text() for c in range(4)] == \
        ["⟦Case⟧", "⟦Images⟧", "⟦Label⟧", "⟦Status⟧"]
    channel = panel.panel.channelNames()[0]
    assert panel.panel.volumeSelectors[0].toolTip() == f"⟦The {channel} volume of this case⟧"
    assert ui.labelSelector.noneDisplay == "⟦(no label: test case)⟧"
    volume, _ = syntheticCase(scene, seed=2)
    panel.panel.volumeSelectors[0].setCurrentNode(volume)
    ui.labelSelector.setCurrentNode(None)
    ui.caseIdLineEdit.setText("bad id")
    ui.addCaseButton.click()
    kind, text = qtHarness.messages[-1]
    assert kind == "error" and text.startswith("⟦Could not add the case.⟧")
    assert "⟦case 'bad id'" in text  # the id, in a message translated whole
    ui.caseIdLineEdit.setText("p1")
    ui.addCaseButton.click()
    assert ui.statusLabel.text() == "⟦1 case(s) from the scene.⟧"
    assert ui.casesTable.rowCount() == 1 and ui.casesTable.item(0, 2).text() == "⟦(none)⟧"
    ui.casesTable.selectRow(0)
    assert ui.removeCaseButton.isEnabled()
    ui.removeCaseButton.click()
    assert ui.casesTable.rowCount() == 0
    assert {"DeepMedDataLib.DataPanel", "DeepMedDataLib.DataLogic"} <= contexts
