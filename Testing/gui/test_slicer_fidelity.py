"""What a real Slicer does and the former harness hid (issue 9): each case failed on the old code.

The stand-ins follow CTK's ctkPathLineEdit, Slicer's qMRMLNodeComboBox, slicer.util.tryWithErrorDisplay and the
module widget life cycle (setup once, enter/exit on module switches, cleanup on exit). The panel code runs with
true_property; this test file reads widgets with PySide6 methods (PySide applies features only to modules whose
source names PySide)."""

import json
import time
from pathlib import Path

import pytest
from conftest import saveScreenshot
from naming import names

from DeepMedLib.SelfTestData import syntheticCase, writeSyntheticDataset

pytestmark = pytest.mark.gui


# ---- the stand-ins are as strict as the real classes ----------------------------------------------------
def test_path_field_validates_like_ctk_and_browses_per_filter(qtHarness):
    import ctk

    field = ctk.ctkPathLineEdit()
    emitted = []
    field.currentPathChanged.connect(emitted.append)
    field.nameFilters = ["Dataset manifests (*.json *.csv)", "All files (*)"]  # "*" adds nothing (ctkUtils.cpp)
    field.currentPath = "/data/Dataset001_Boxes"
    assert emitted == [] and not field.hasValidInput()  # a folder is never valid input here
    field.currentPath = "/data/dataset.json"
    assert emitted == ["/data/dataset.json"]
    field.currentPath = ""
    assert emitted == ["/data/dataset.json"]  # clearing emits nothing either
    field.typePath("/data/a.json")
    assert emitted[-1] == "/data/a.json"
    field.filters = ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Dirs
    qtHarness.fileDialogAnswers.append("")
    field.browse()
    assert qtHarness.fileDialogCalls[-1] == ("open", "Dataset manifests (*.json *.csv);;All files (*)")
    field.filters = ctk.ctkPathLineEdit.Dirs
    field.browse()
    assert qtHarness.fileDialogCalls[-1] == ("folder", "")


def test_node_selector_defaults_and_error_display_as_in_slicer(qtHarness, scene):
    import slicer

    selector = slicer.qMRMLNodeComboBox()
    selector.nodeTypes = ["vtkMRMLSegmentationNode"]
    selector.setMRMLScene(scene)
    assert selector.actionItems() == ["Create new Segmentation", "Delete current Segmentation"]
    with pytest.raises(ValueError, match="boom"), slicer.util.tryWithErrorDisplay("Failed."):
        raise ValueError("boom")
    assert qtHarness.messages == [("error", "Failed.\n\nboom")]


# ---- what the stricter harness showed, fixed ------------------------------------------------------------
def test_selectors_offer_neither_create_nor_delete(openPanel, scene):
    syntheticCase(scene, seed=1)
    data, segment = openPanel("DeepMedData"), openPanel("DeepMedRun")
    selectors = [data.ui.labelSelector, segment.ui.outputSelector] + data.panel.volumeSelectors + \
        segment.panel.inputSelectors
    assert len(selectors) == 4 and all(s.actionItems() == [] for s in selectors)


def test_a_folder_dataset_enables_train(openPanel, qtHarness, tmp_path):
    panel = openPanel("DeepMedTrain")
    ui = panel.ui
    folder = tmp_path / "Dataset001_Boxes"
    writeSyntheticDataset(folder)
    ui.datasetPathLineEdit.typePath(str(folder))  # typed by hand
    assert ui.trainButton.isEnabled() and ui.modelNameLineEdit.text() == "Dataset001_Boxes"
    ui.datasetPathLineEdit.typePath("")
    assert not ui.trainButton.isEnabled()  # cleared: no dataset (validInputChanged)
    qtHarness.fileDialogAnswers.append(str(folder))
    ui.datasetFolderButton.click()  # or chosen in a folder dialog
    assert qtHarness.fileDialogCalls[-1][0] == "folder"
    assert ui.datasetPathLineEdit.currentPath == str(folder) and ui.trainButton.isEnabled()
    assert panel.panel.parameterNode.datasetPath == str(folder)


def test_an_exception_inside_a_handler_leaves_the_panel_right(qtHarness, scene, monkeypatch):
    import slicer

    from DeepMedLib import Dependencies

    installed = {"torch", "tqdm", "matplotlib", "yaml", "jsonschema", "safetensors", "nibabel", "einops", "skimage"}
    monkeypatch.setattr(Dependencies, "isAvailable", installed.__contains__)
    monkeypatch.setattr(slicer.util, "pip_install", lambda args: installed.add("monai"), raising=False)
    widget = qtHarness.modules.select("DeepMedRun")
    ui = widget.ui
    assert ui.dependenciesLabel.text().startswith("Missing Python packages: monai, scipy.")
    ui.installDependenciesButton.click()  # pip installs monai, scipy fails: the handler raises
    assert names(qtHarness.messages[-1][1], "scipy") and "monai" not in qtHarness.messages[-1][1]
    assert len(qtHarness.uncaught) == 1  # re-raised, as Slicer's tryWithErrorDisplay does
    assert ui.dependenciesLabel.text().startswith("Missing Python packages: scipy.")  # updated in finally


def test_entering_the_module_again_keeps_the_chosen_inputs(openPanel, qtHarness, scene):
    segment = openPanel("DeepMedRun")
    first, _ = syntheticCase(scene, seed=1, name="first MR")
    second, _ = syntheticCase(scene, seed=2, name="second MR")
    segment.panel.inputSelectors[0].setCurrentNode(second)
    segment.ui.ttaCheckBox.setChecked(True)
    openPanel("DeepMedData")           # another module: exit()
    openPanel("DeepMedRun")        # back: enter()
    assert segment.panel.inputSelectors[0].currentNode() is second
    assert segment.ui.ttaCheckBox.isChecked() and segment.ui.applyButton.isEnabled()


def test_run_inputs_and_output_live_in_the_parameter_node(openPanel, qtHarness, scene):
    """The chosen volumes and output node are node references of the module's parameter node (saved with the
    scene), and a parameter node that names others (a scene loaded from a file) sets the selectors."""
    run = openPanel("DeepMedRun")
    first, _ = syntheticCase(scene, seed=1, name="first MR")
    second, _ = syntheticCase(scene, seed=2, name="second MR")
    run.panel.inputSelectors[0].setCurrentNode(first)
    output = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "earlier result")
    run.ui.outputSelector.setCurrentNode(output)
    node = scene.GetSingletonNode("DeepMedRun", "vtkMRMLScriptedModuleNode")
    assert node.GetParameter("inputVolumes.len") == "1" and node.GetNodeReference("inputVolumes.0") is first
    assert node.GetNodeReference("outputNode") is output
    node.SetNodeReferenceID("inputVolumes.0", second.GetID())  # as a scene read from a file would have it
    node.SetNodeReferenceID("outputNode", None)
    run.setParameterNode(None)  # the module widget re-reads its parameter node
    run.initializeParameterNode()
    assert run.panel.inputSelectors[0].currentNode() is second
    assert run.panel.parameterNode.inputVolumes == [second]


def test_closing_the_scene_clears_the_scene_cases(openPanel, scene):
    from DeepMedLib import SceneBridge
    from DeepMedLib.SelfTestData import syntheticArrays, syntheticImage

    data = openPanel("DeepMedData")
    volume, _ = syntheticCase(scene, seed=1, name="MR 1")
    labels = [{"value": 1, "name": "box", "color": [200, 60, 60]}]
    segmentation = SceneBridge.addSegmentationFromLabelImage(syntheticImage((syntheticArrays(1)[1] > 0).astype("uint8")), volume,
                                                             labels, "seg 1")
    data.panel.volumeSelectors[0].setCurrentNode(volume)
    data.ui.labelSelector.setCurrentNode(segmentation)
    data.ui.addCaseButton.click()
    assert data.ui.casesTable.rowCount() == 1
    scene.Clear(0)  # File > Close Scene
    assert data.ui.casesTable.rowCount() == 0 and data.panel.sceneCases == []
    assert data.ui.statusLabel.text() == "The scene was closed: its cases were removed."
    assert data.panel.parameterNode is not None  # a new parameter node for the new scene


def test_panel_state_lives_in_the_parameter_node(openPanel, scene):
    train = openPanel("DeepMedTrain")
    ui = train.ui
    ui.epochsSpinBox.setValue(7)
    ui.applicationComboBox.setCurrentText("regression")
    node = scene.GetSingletonNode("DeepMedTrain", "vtkMRMLScriptedModuleNode")
    assert node.GetParameter("epochs") == "7" and node.GetParameter("application") == "regression"
    node.SetParameter("batchSize", "4")  # e.g. a scene loaded from a file
    assert ui.batchSizeSpinBox.value() == 4


def test_exit_stops_a_training_with_a_checkpoint(openPanel, qtHarness, tmp_path):
    panel = openPanel("DeepMedTrain")
    ui = panel.ui
    ui.datasetPathLineEdit.typePath(str(writeSyntheticDataset(tmp_path / "boxes")))
    ui.patchSizeLineEdit.setText("16,16,16")
    ui.epochsSpinBox.setValue(200)
    ui.deviceComboBox.setCurrentText("cpu")
    ui.extraSettingsLineEdit.setText("network.args.channels=[8,16,32]; network.args.strides=[2,2]; "
                                     "training.iterations_per_epoch=3")
    ui.trainButton.click()
    run = panel.panel.run
    qtHarness.processEventsUntil(lambda: ui.progressBar.value() > 0, timeout=180)
    started = time.monotonic()
    qtHarness.modules.exitApplication()  # Slicer closes while it trains
    assert time.monotonic() - started < 2.0, "Slicer waited for the worker on exit"
    run.job.process.wait(timeout=120)  # the worker, alone, checkpoints and ends
    assert run.job.wait(timeout=10).status == "stopped"
    assert (run.modelDir / "checkpoints" / "last").is_dir()  # Resume continues it


def test_typed_settings_reach_the_worker_as_a_config_file(openPanel, monkeypatch, tmp_path):
    panel = openPanel("DeepMedTrain")
    ui = panel.ui
    started = []
    monkeypatch.setattr(panel.logic.runner, "jobClass", lambda command, **kwargs: started.append(command) or
                        _NeverStarted(kwargs.get("stopFile")))
    ui.datasetPathLineEdit.typePath(str(writeSyntheticDataset(tmp_path / "boxes")))
    assert ui.batchSizeSpinBox.text() == "auto" and ui.learningRateSpinBox.text() == "auto"
    ui.trainButton.click()  # auto: neither is sent, the application plans them
    config = json.loads(Path(started[-1][started[-1].index("--config") + 1]).read_text())
    assert "batch_size" not in config.get("training", {}) and "lr" not in config.get("optimizer", {})
    panel.panel.run = None
    panel.panel.updateButtons()
    ui.learningRateSpinBox.setValue(0.00005)
    ui.timeBudgetSpinBox.setValue(10)
    ui.extraSettingsLineEdit.setText("training.val_every=2; data.max_patch_voxels=1e5; augmentation.elastic=true")
    ui.trainButton.click()
    command = started[-1]
    assert "--set" not in command
    config = json.loads(Path(command[command.index("--config") + 1]).read_text())
    assert config["optimizer"]["lr"] == pytest.approx(5e-05) and config["training"]["time_limit"] == 600
    assert config["training"]["val_every"] == 2 and config["data"]["max_patch_voxels"] == 1e5
    assert config["augmentation"]["elastic"] is True and config["loss"]["name"] == "auto"
    assert config["app"] == "segmentation" and config["training"]["epochs"] == 50
    ui.extraSettingsLineEdit.setText("optimizer.lr=1e-4")
    panel.panel.run = None
    panel.panel.updateButtons()
    ui.trainButton.click()
    command = started[-1]
    assert json.loads(Path(command[command.index("--config") + 1]).read_text())["optimizer"]["lr"] == 1e-4


class _NeverStarted:
    """A job that records instead of starting a process (the logic receives its runner)."""

    def __init__(self, stopFile):
        from DeepMedLib.Signal import Signal

        self.stopFile, self.running, self.events = stopFile, False, []
        self.eventReceived, self.finished = Signal("dict"), Signal("JobResult")

    def start(self):
        return self

    def poll(self):
        return True

    def cancel(self):
        pass

    requestStop = cancel

    def waitForStop(self, *args, **kwargs):
        return True


def test_loss_choices_come_from_the_engine_per_application(openPanel, qtHarness):
    """The real engine's loss registry answers (``deepmed list losses --app X --json`` in a worker)."""
    from deepmed.losses import losses_for

    panel = openPanel("DeepMedTrain")
    ui = panel.ui
    ui.applicationComboBox.setCurrentText("regression")
    qtHarness.processEventsUntil(lambda: panel.panel.lossJob is None, timeout=60)
    assert [ui.lossComboBox.itemText(i) for i in range(ui.lossComboBox.count())] == ["auto", *losses_for("regression")]
    ui.lossComboBox.setCurrentText("mse")
    ui.applicationComboBox.setCurrentText("segmentation")
    qtHarness.processEventsUntil(lambda: panel.panel.lossJob is None, timeout=60)
    items = [ui.lossComboBox.itemText(i) for i in range(ui.lossComboBox.count())]
    assert items == ["auto", *losses_for("segmentation")] and ui.lossComboBox.currentText() == "auto"
    assert "mse" not in items


def test_network_choices_come_from_the_engine_per_application(openPanel, qtHarness):
    """``deepmed list networks --app X --json`` in a worker: dense networks for segmentation, one-vector
    networks for classification, only "auto" where the application builds its own; kept in the parameter node."""
    from deepmed.applications import get_application

    panel = openPanel("DeepMedTrain")
    ui = panel.ui

    def choices(application):
        ui.applicationComboBox.setCurrentText(application)
        qtHarness.processEventsUntil(lambda: panel.panel.networkJob is None, timeout=60)
        return [ui.networkComboBox.itemText(i) for i in range(ui.networkComboBox.count())]

    segmentation = choices("segmentation")
    assert segmentation == ["auto", *get_application("segmentation").network_choices()] and "unet" in segmentation
    ui.networkComboBox.setCurrentText("segresnet")
    assert panel.panel.parameterNode.network == "segresnet"
    classification = choices("classification")
    assert "densenet121" in classification and "unet" not in classification
    assert ui.networkComboBox.currentText() == "auto"
    assert choices("autoencoder") == ["auto"]
    assert choices("segmentation") == segmentation


def test_check_installation_shows_the_report(openPanel, qtHarness):
    """The real ``deepmed doctor`` on this machine, then a device that is not there."""
    import platform

    import monai
    import torch

    panel = openPanel("DeepMedRun")
    ui = panel.ui
    ui.deviceComboBox.setCurrentText("cpu")
    ui.checkInstallationButton.click()
    assert not ui.checkInstallationButton.isEnabled()
    qtHarness.processEventsUntil(lambda: panel.panel.dependencies.check is None, timeout=120)
    report = ui.installReportLabel.text()
    assert report.startswith(f"Python {platform.python_version()}, torch {torch.__version__} (CPU build), "
                             f"MONAI {monai.__version__}")
    assert "Test pass on cpu (forward + backward): OK in" in report and "Problem" not in report
    assert ui.checkInstallationButton.isEnabled()
    saveScreenshot(panel.parent, "install_check")
    ui.deviceComboBox.setCurrentText("cuda")  # no GPU here: named as a problem with its fix
    ui.checkInstallationButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.dependencies.check is None, timeout=120)
    assert "Problem:" in ui.installReportLabel.text() and "cuda" in ui.installReportLabel.text().lower()


def test_panels_set_up_when_no_worker_can_start(openPanel, qtHarness, monkeypatch, tmp_path):
    """A broken PythonSlicer: each panel still sets up (installed models listed), and says why its engine
    lists are missing instead of staying empty or raising."""
    from DeepMedLib import EngineCommand

    monkeypatch.setattr(EngineCommand, "pythonExecutable", lambda: str(tmp_path / "no-PythonSlicer"))
    run = openPanel("DeepMedRun")
    assert run.ui.modelComboBox.count() == 1  # the installed model, read without a worker
    assert run.ui.statusLabel.text().startswith("Could not list catalogue models")
    assert "could not start" in run.ui.statusLabel.text()
    train = openPanel("DeepMedTrain")
    assert train.ui.trainButton is not None and not qtHarness.uncaught
