"""The DeepMed Train panel: real .ui and widget code, real trainings in worker processes (PySide6 offscreen)."""

import pytest
from conftest import saveScreenshot

from DeepMedLib.SelfTestData import writeSyntheticDataset

pytestmark = pytest.mark.gui
TINY_EXTRA = ("network.args.channels=[8,16,32]; network.args.strides=[2,2]; training.iterations_per_epoch=3; "
              "training.val_every=1")


@pytest.fixture
def panel(openPanel):
    return openPanel("DeepMedTrain")


def configureTinyTraining(ui, manifest, epochs):
    ui.datasetPathLineEdit.typePath(str(manifest))
    ui.patchSizeLineEdit.setText("16,16,16")
    ui.epochsSpinBox.setValue(epochs)
    ui.deviceComboBox.setCurrentText("cpu")
    ui.extraSettingsLineEdit.setText(TINY_EXTRA)


def test_check_fills_defaults_then_train_shows_progress_curves_and_lands_in_run_panel(panel, qtHarness,
                                                                                       scene, tmp_path):
    ui = panel.ui
    assert not ui.trainButton.isEnabled()
    manifest = writeSyntheticDataset(tmp_path / "boxes")
    ui.datasetPathLineEdit.typePath(str(manifest))
    assert ui.modelNameLineEdit.text() == "boxes" and ui.trainButton.isEnabled()
    ui.checkDatasetButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.checkRun is None, timeout=120)
    assert "4 case(s), 4 with labels" in ui.datasetSummaryLabel.text()
    assert "no problems found" in ui.datasetSummaryLabel.text()
    assert ui.patchSizeLineEdit.text() == "32,16,16"  # suggested from the fingerprint
    segmentWidget = qtHarness.modules.select("DeepMedRun")
    qtHarness.modules.select("DeepMedTrain")
    modelsBefore = segmentWidget.ui.modelComboBox.count()

    configureTinyTraining(ui, manifest, epochs=3)
    ui.modelNameLineEdit.setText("boxes-gui")
    ui.trainButton.click()
    assert ui.stopButton.isEnabled() and not ui.trainButton.isEnabled() and not ui.settingsCollapsibleButton.isEnabled()
    seen = set()
    qtHarness.processEventsUntil(lambda: seen.add(ui.progressBar.value()) or panel.panel.run is None)
    assert qtHarness.messages == []
    assert ui.progressBar.value() == 100 and any(0 < v < 100 for v in seen)
    assert ui.statusLabel.text().startswith("Finished: model 'boxes-gui' is in the library")
    curves = panel.panel.curves
    assert [row[0] for row in curves.values(curves.lossTable)] == [1, 2, 3]
    assert len(curves.values(curves.validationTable)) == 3
    assert segmentWidget.ui.modelComboBox.count() == modelsBefore + 1  # the Segment panel heard of it
    saveScreenshot(panel.parent, "train_panel_finished")


def test_stop_then_resume(panel, qtHarness, tmp_path):
    ui = panel.ui
    manifest = writeSyntheticDataset(tmp_path / "boxes")
    configureTinyTraining(ui, manifest, epochs=30)
    ui.trainButton.click()
    qtHarness.processEventsUntil(lambda: ui.progressBar.value() > 0)
    ui.stopButton.click()
    assert ui.statusLabel.text().startswith("Stopping")
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert "Resume continues from the checkpoint" in ui.statusLabel.text()
    assert ui.resumeButton.isEnabled() and ui.trainButton.isEnabled()
    stoppedAt, stoppedModel = ui.progressBar.value(), panel.panel.stoppedModelDir.name
    assert 0 < stoppedAt < 100
    saveScreenshot(panel.parent, "train_panel_stopped")
    ui.resumeButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert ui.statusLabel.text().startswith(f"Finished: model '{stoppedModel}'") and ui.progressBar.value() == 100
    assert not ui.resumeButton.isEnabled()


def test_bad_settings_are_reported_and_nothing_runs(panel, qtHarness, scene, tmp_path):
    ui = panel.ui
    manifest = writeSyntheticDataset(tmp_path / "boxes")
    configureTinyTraining(ui, manifest, epochs=2)
    ui.extraSettingsLineEdit.setText("training.batch_size")
    ui.trainButton.click()
    assert qtHarness.messages[-1][0] == "error" and "expected key=value" in qtHarness.messages[-1][1]
    assert panel.panel.run is None and ui.trainButton.isEnabled()
    ui.extraSettingsLineEdit.setText("network.name=unett")
    ui.trainButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None, timeout=120)
    assert "did you mean 'unet'" in qtHarness.messages[-1][1]
    assert ui.statusLabel.text().startswith("Failed: ")
    for nodeClass in ("vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode", "vtkMRMLTableNode"):
        assert scene.GetNumberOfNodesByClass(nodeClass) == 0  # an empty chart is not left behind
    assert not ui.showCurvesButton.isEnabled()


def test_dropdowns_offer_what_the_engine_registers(panel, qtHarness):
    """Applications, networks and losses come from the engine (workers)."""
    import json
    import subprocess
    import sys

    from deepmed.applications import APPLICATIONS, DEFAULT_APPLICATION, get_application, trainable_application_names
    from deepmed.losses import losses_for
    from DeepMedLib.EngineCommand import engineEnvironment

    networks = [panel.ui.networkComboBox.itemText(i) for i in range(panel.ui.networkComboBox.count())]
    assert networks == ["auto", *get_application(DEFAULT_APPLICATION).network_choices()]
    combo = panel.ui.applicationComboBox
    items = [combo.itemText(i) for i in range(combo.count())]
    listed = subprocess.run([sys.executable, "-m", "deepmed", "list", "applications", "--trainable", "--json"],
                            env=engineEnvironment(), capture_output=True, text=True, encoding="utf-8", check=True).stdout
    assert items == list(json.loads(listed)) and set(items) <= set(APPLICATIONS.names())  # plug-ins of tests aside
    runs_only = set(APPLICATIONS.names()) - set(trainable_application_names())
    assert runs_only and not set(items) & runs_only  # imported models' applications run, are not trained
    assert combo.currentText() == items[0] == DEFAULT_APPLICATION
    assert combo.itemData(1, 3) == APPLICATIONS.describe()[items[1]]  # the description as tooltip
    combo.setCurrentText("regression")
    qtHarness.processEventsUntil(lambda: panel.panel.lossJob is None, timeout=60)
    assert [panel.ui.lossComboBox.itemText(i) for i in range(panel.ui.lossComboBox.count())] == \
        ["auto", *losses_for("regression")]
    assert "network.name" not in panel.panel.settings()  # auto: the application's plan chooses


def test_publish_makes_the_trained_model_a_verified_package(panel, qtHarness, tmp_path):
    import json

    from deepmed.zoo.library import read_installed
    from deepmed.zoo.package import verify_installed

    ui = panel.ui
    configureTinyTraining(ui, writeSyntheticDataset(tmp_path / "boxes"), epochs=2)
    ui.modelNameLineEdit.setText("published-boxes")
    assert not ui.publishButton.isEnabled()
    ui.trainButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert not ui.publishButton.isEnabled() and ui.publishButton.toolTip() == "A published model needs a licence"
    ui.publishLicenceLineEdit.setText("CC-BY-4.0")
    ui.publishVersionLineEdit.setText("0.3.0")
    ui.publishZipPathLineEdit.typePath(str(tmp_path / "published-boxes.zip"))
    ui.publishButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.publishJob is None, timeout=120)
    assert qtHarness.messages == [], qtHarness.messages
    assert ui.statusLabel.text().startswith("Published published-boxes 0.3.0 in the library and as ")
    model = read_installed(qtHarness.library / "published-boxes")
    assert model.card.licence == "CC-BY-4.0" and model.card.version == "0.3.0"
    assert verify_installed(model) == [] and (model.path / "SHA256SUMS").is_file()
    assert (tmp_path / "published-boxes.zip").is_file()
    assert json.loads((model.path / "model_card.json").read_text())["title"] == "published-boxes"
    saveScreenshot(panel.parent, "train_panel_published")


def test_start_from_offers_the_library_models_of_the_application_and_the_engine_fine_tunes(panel, qtHarness,
                                                                                           tmp_path):
    import json
    from pathlib import Path

    ui = panel.ui
    combo = ui.initModelComboBox
    offered = lambda: [combo.itemText(i) for i in range(combo.count())]  # noqa: E731
    library = qtHarness.library
    assert offered() == ["scratch", "boxes (boxes)"]  # the harness's library holds one segmentation model
    ui.applicationComboBox.setCurrentText("regression")
    assert offered() == ["scratch"]  # its card's application is not the panel's
    ui.applicationComboBox.setCurrentText("segmentation")
    assert ui.networkComboBox.isEnabled()
    combo.setCurrentIndex(1)
    assert not ui.networkComboBox.isEnabled() and "keeps the network of boxes" in ui.networkComboBox.toolTip()
    configureTinyTraining(ui, writeSyntheticDataset(tmp_path / "boxes"), epochs=2)
    ui.modelNameLineEdit.setText("boxes-tuned")
    ui.trainButton.click()
    command = panel.panel.run.job.command
    config = json.loads(Path(command[command.index("--config") + 1]).read_text())
    assert config["training"]["init"] == str(library / "boxes")
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert qtHarness.messages == [], qtHarness.messages
    card = json.loads((library / "boxes-tuned" / "model_card.json").read_text())
    assert card["training"]["initialized_from"]["model"] == "boxes"
    assert card["network"] == json.loads((library / "boxes" / "model_card.json").read_text())["network"]
    assert offered() == ["scratch", "boxes (boxes)", "boxes-tuned (boxes-tuned)"]  # the new model is offered too
    assert combo.currentText() == "boxes (boxes)"
    saveScreenshot(panel.parent, "train_panel_fine_tuned")
