"""The DeepMed Segment panel: real .ui, real widget code, real scene, real worker process (PySide6 offscreen).

The panel code runs with true_property (as under PythonQt); this test file reads widgets with methods."""

import pytest
from conftest import OBLIQUE, saveScreenshot

from DeepMedLib.SelfTestData import syntheticCase

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(openPanel):
    return openPanel("DeepMedRun")


def test_model_dropdown_builds_inputs_and_segment_adds_an_aligned_segmentation(panel, qtHarness, scene):
    ui = panel.ui
    assert ui.modelComboBox.count() == 1 and "boxes" in ui.modelComboBox.currentText()
    assert "Labels: box, core" in ui.modelDescriptionLabel.text() and "Inputs: MR" in ui.modelDescriptionLabel.text()
    assert len(panel.panel.inputSelectors) == 1 and not ui.applyButton.isEnabled()  # no volume yet
    volume, truth = syntheticCase(scene, seed=11, direction=OBLIQUE, name="patient MR")
    assert panel.panel.inputSelectors[0].currentNode() is volume
    assert ui.applyButton.isEnabled() and ui.applyButton.text() == "Segment"
    ui.deviceComboBox.setCurrentText("cpu")
    ui.applyButton.click()
    assert ui.cancelButton.isEnabled() and not ui.applyButton.isEnabled() and ui.progressBar.maximum() == 0
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert qtHarness.messages == []
    output = panel.panel.lastOutput
    assert output is not None and output.IsA("vtkMRMLSegmentationNode")
    assert ui.statusLabel.text() == f"Done: {output.GetName()}" and ui.progressBar.value() == 100
    names = [output.GetSegmentation().GetNthSegment(i).GetName() for i in range(2)]
    assert names == ["box", "core"]
    assert output.GetNodeReference(output.GetReferenceImageGeometryReferenceRole()) is volume
    assert ui.applyButton.isEnabled() and not ui.cancelButton.isEnabled()
    saveScreenshot(panel.parent, "run_panel_done")


def test_cancel_restores_buttons_and_leaves_the_scene_unchanged(panel, qtHarness, scene):
    syntheticCase(scene, seed=3)
    before = scene.GetNumberOfNodes()
    panel.ui.applyButton.click()
    assert panel.ui.cancelButton.isEnabled()
    panel.ui.cancelButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None, timeout=60)
    assert panel.ui.statusLabel.text() == "Cancelled; the scene is unchanged."
    assert scene.GetNumberOfNodes() == before
    assert panel.ui.applyButton.isEnabled() and not panel.ui.cancelButton.isEnabled()
    saveScreenshot(panel.parent, "run_panel_cancelled")


def test_existing_output_chosen_by_the_user_is_replaced_and_others_never(panel, qtHarness, scene):
    syntheticCase(scene, seed=4)
    mine = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my edits")
    mine.CreateDefaultDisplayNodes()
    mine.GetSegmentation().AddEmptySegment("manual", "manual")
    assert panel.ui.outputSelector.currentNode() is None  # "Create new" by default
    panel.ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert panel.panel.lastOutput is not mine and mine.GetSegmentation().GetNumberOfSegments() == 1
    panel.ui.outputSelector.setCurrentNode(mine)
    panel.ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert panel.panel.lastOutput is mine
    assert mine.GetSegmentation().GetSegmentIdBySegmentName("manual") == ""


def test_a_failing_model_shows_its_error_and_the_library_refreshes(panel, qtHarness, scene, tmp_path):
    import shutil

    from DeepMedLib import ModelLibrary

    library = qtHarness.library
    shutil.copytree(library / "boxes", library / "broken")
    (library / "broken" / "model.safetensors").write_bytes(b"garbage")
    ModelLibrary.changed.emit(str(library / "broken"))  # what a finished training does
    assert panel.ui.modelComboBox.count() == 2
    panel.ui.modelComboBox.setCurrentIndex([m.id for m in panel.panel.models].index("broken"))
    syntheticCase(scene, seed=5)
    before = scene.GetNumberOfNodes()
    panel.ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    kind, text = qtHarness.messages[-1]
    assert kind == "error" and "model.safetensors" in text and "Traceback" not in text
    assert panel.ui.statusLabel.text().startswith("Failed: ")
    assert scene.GetNumberOfNodes() == before


def test_missing_dependencies_are_named_and_installed_on_request(qtHarness, scene, monkeypatch):
    import slicer

    from DeepMedLib import Dependencies

    installed = {"torch", "scipy", "tqdm", "matplotlib", "yaml", "jsonschema", "safetensors", "nibabel", "einops", "skimage"}
    monkeypatch.setattr(Dependencies, "isAvailable", installed.__contains__)
    pipCalls = []
    widget = qtHarness.modules.select("DeepMedRun")

    def pipInstall(args):  # pip's output pumps processEvents: the user may click again meanwhile
        pipCalls.append(args)
        assert not widget.ui.installDependenciesButton.isEnabled()
        assert not widget.ui.checkInstallationButton.isEnabled()
        widget.ui.installDependenciesButton.click()
        widget.panel.dependencies.install()  # even a direct second call does not start pip again
        installed.add("monai")

    monkeypatch.setattr(slicer.util, "pip_install", pipInstall, raising=False)
    syntheticCase(scene, seed=2)
    ui = widget.ui
    assert not ui.installDependenciesButton.isHidden()
    assert ui.dependenciesLabel.text().startswith("Missing Python packages: monai.")
    assert not ui.applyButton.isEnabled()  # nothing can run without the engine's packages
    ui.installDependenciesButton.click()
    assert len(pipCalls) == 1 and pipCalls[0][0] == "monai==1.6.1" and "-c" in pipCalls[0]
    assert qtHarness.messages[0][0] == "confirm"
    assert qtHarness.messages[-1] == ("info", "Installed: monai==1.6.1. No restart needed: DeepMed runs models in "
                                              "new background processes.")
    assert ui.installDependenciesButton.isHidden() and ui.applyButton.isEnabled()
    assert ui.dependenciesLabel.text() == "Everything DeepMed needs is installed."
    saveScreenshot(widget.parent, "run_panel_dependencies_installed")


def test_catalogue_model_downloads_with_progress_then_segments_and_can_be_removed(panel, qtHarness, scene,
                                                                                httpServer, tmp_path, monkeypatch):
    import json

    from deepmed.zoo.checksums import sha256_of
    from deepmed.zoo.package import export_package

    folder, base = httpServer
    library = qtHarness.library
    package = export_package(library / "boxes", folder / "liver-2.0.0.zip", model_id="liver", version="2.0.0",
                             title="Liver boxes", licence="CC-BY-4.0")
    entry = {"id": "liver", "version": "2.0.0", "title": "Liver boxes", "description": "test", "task": "segmentation",
             "modality": "MR", "licence": "CC-BY-4.0", "urls": [f"{base}/{package.name}"],
             "size": package.stat().st_size, "sha256": sha256_of(package)}
    (folder / "catalog.json").write_text(json.dumps({"format": "deepmed-catalog/1", "models": [entry]}))
    ui = panel.ui
    assert not ui.addCatalogueButton.isEnabled()
    ui.catalogueLineEdit.setText(f"{base}/missing.json")
    ui.addCatalogueButton.click()
    qtHarness.processEventsUntil(lambda: not panel.panel.zooJobs, timeout=60)
    assert qtHarness.messages[-1][0] == "error" and "404" in qtHarness.messages[-1][1]
    assert not (library / "catalogs.txt").exists()
    qtHarness.messages.clear()
    ui.catalogueLineEdit.setText(f"{base}/catalog.json")
    ui.addCatalogueButton.click()
    qtHarness.processEventsUntil(lambda: not panel.panel.zooJobs, timeout=60)
    assert (library / "catalogs.txt").read_text().split() == [f"{base}/catalog.json"]
    items = [ui.modelComboBox.itemText(i) for i in range(ui.modelComboBox.count())]
    assert items[-1].startswith("Liver boxes: download ") and "CC-BY-4.0" in items[-1]
    ui.modelComboBox.setCurrentIndex(len(items) - 1)
    assert "Not installed" in ui.modelDescriptionLabel.text() and ui.downloadModelButton.isEnabled()
    assert not ui.applyButton.isEnabled() and not ui.removeModelButton.isEnabled()
    ui.downloadModelButton.click()
    qtHarness.processEventsUntil(lambda: not panel.panel.zooJobs, timeout=120)
    assert qtHarness.messages == [], qtHarness.messages
    assert ui.statusLabel.text() == "Installed liver 2.0.0." and ui.progressBar.value() == 100
    assert (library / "liver" / "SHA256SUMS").is_file() and panel.panel.currentModel().id == "liver"
    syntheticCase(scene, seed=6)
    ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert panel.panel.lastOutput is not None
    saveScreenshot(panel.parent, "run_panel_downloaded")
    ui.removeModelButton.click()  # the harness confirms
    assert not (library / "liver").exists() and panel.panel.currentId() != "liver"
    assert any(kind == "confirm" and "liver" in text for kind, text in qtHarness.messages)


def test_import_package_button_installs_and_bad_packages_say_why(panel, qtHarness, tmp_path, monkeypatch):

    from deepmed.zoo.package import export_package

    library = qtHarness.library
    package = export_package(library / "boxes", tmp_path / "shared-model.zip", model_id="shared", licence="MIT")
    qtHarness.fileDialogAnswers.append(str(package))
    panel.ui.importModelButton.click()
    qtHarness.processEventsUntil(lambda: not panel.panel.zooJobs, timeout=60)
    assert panel.panel.currentModel().id == "shared" and panel.ui.statusLabel.text() == "Installed shared 1.0.0."
    broken = tmp_path / "broken.zip"
    broken.write_bytes(package.read_bytes()[:2000])
    panel.panel.importPackage(str(broken))
    qtHarness.processEventsUntil(lambda: not panel.panel.zooJobs, timeout=60)
    kind, text = qtHarness.messages[-1]
    assert kind == "error" and "broken.zip" in text
    assert sorted(p.name for p in library.iterdir() if not p.name.startswith(".")) == ["boxes", "shared"]


def test_a_fold_ensemble_runs_whole_or_one_fold(panel, qtHarness, scene, tmp_path):
    """A cross-validation model says so in its description and offers the ensemble or a single fold."""

    from deepmed.data.manifest import Dataset
    from deepmed.data.split import add_splits
    from deepmed.workflows.cross_validation import train_folds
    from DeepMedLib import ModelLibrary
    from DeepMedLib.SelfTestData import TINY_SETTINGS, writeSyntheticDataset

    manifest = writeSyntheticDataset(tmp_path / "data", cases=6)
    dataset = add_splits(Dataset.load(manifest), folds=3)
    dataset.save(manifest)
    overrides = [f"{key}={value}".replace(" ", "") for key, value in TINY_SETTINGS.items()]
    target = qtHarness.library / "boxes-cv"
    train_folds(manifest, target, "all", overrides=overrides, epochs=2, device="cpu", progress="none")
    ModelLibrary.changed.emit(str(target))
    ui = panel.ui
    index = next(i for i in range(ui.modelComboBox.count()) if "boxes-cv" in ui.modelComboBox.itemText(i))
    ui.modelComboBox.setCurrentIndex(index)
    assert "3-fold ensemble" in ui.modelDescriptionLabel.text()
    assert ui.foldsComboBox.isVisibleTo(panel.parent) and ui.foldsComboBox.count() == 4
    syntheticCase(scene, seed=5, name="patient MR")
    ui.deviceComboBox.setCurrentText("cpu")
    ui.foldsComboBox.setCurrentIndex(2)  # fold 1 only
    assert panel.panel.chosenFolds() == [1]
    ui.applyButton.click()
    assert "--folds" in panel.panel.run.job.command and "1" in panel.panel.run.job.command
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert qtHarness.messages == [] and panel.panel.lastOutput.IsA("vtkMRMLSegmentationNode")
    ui.foldsComboBox.setCurrentIndex(0)  # the ensemble
    ui.applyButton.click()
    assert "--folds" not in panel.panel.run.job.command
    qtHarness.processEventsUntil(lambda: panel.panel.run is None)
    assert qtHarness.messages == []
    saveScreenshot(panel.parent, "run_panel_ensemble")


def test_the_library_folder_is_chosen_in_the_panel_and_remembered(panel, qtHarness, tmp_path):
    """Another folder lists its models (none here), trainings and downloads go there, and next time Slicer
    starts with it (a user preference in QSettings); the process environment is left alone."""
    import os

    from DeepMedLib import ModelLibrary
    from DeepMedLib.ModuleWidget import preference, useRememberedLibrary

    ui = panel.ui
    first, environment = str(qtHarness.library), os.environ["DEEPMED_LIBRARY"]
    assert ui.libraryPathLineEdit.currentPath == first and ui.modelComboBox.count() == 1
    other = tmp_path / "my models"
    other.mkdir()
    ui.libraryPathLineEdit.typePath(str(other))  # key by key: "/", "/t", ... are valid input for CTK (".+")
    assert qtHarness.messages == [] and str(ModelLibrary.libraryFolder()) == first and preference("LibraryFolder") == ""
    ui.libraryPathLineEdit.pressEnter()
    assert qtHarness.messages == []
    assert ModelLibrary.libraryFolder() == other and preference("LibraryFolder") == str(other)
    assert os.environ["DEEPMED_LIBRARY"] == environment  # not set for the whole process
    assert ui.modelComboBox.count() == 0 and "No models yet" in ui.modelDescriptionLabel.text()
    panel.panel.readCatalogues()
    assert panel.panel.catalogueJob.command[-3:] == ["--library", str(other), "list"]  # workers are told
    qtHarness.processEventsUntil(lambda: not panel.panel.zooJobs, timeout=60)
    ModelLibrary.useLibraryFolder(first, announce=False)  # a new Slicer session: the preference is applied at setup
    useRememberedLibrary()
    assert ModelLibrary.libraryFolder() == other


def test_the_library_folder_field_takes_a_typed_path_once_confirmed_and_browse_at_once(panel, qtHarness, tmp_path):
    """Typing never raises a dialog nor rescans per key; a wrong folder confirmed says so once."""
    from DeepMedLib import ModelLibrary

    ui = panel.ui
    first = ModelLibrary.libraryFolder()
    ui.libraryPathLineEdit.typePath(str(tmp_path / "missing"))
    assert qtHarness.messages == [] and ModelLibrary.libraryFolder() == first
    ui.libraryPathLineEdit.pressEnter()
    assert len(qtHarness.messages) == 1 and "missing" in qtHarness.messages[0][1]
    assert ModelLibrary.libraryFolder() == first
    chosen = tmp_path / "browsed"
    chosen.mkdir()
    qtHarness.fileDialogAnswers.append(str(chosen))
    ui.libraryPathLineEdit.browse()
    assert ModelLibrary.libraryFolder() == chosen and ui.libraryPathLineEdit.currentPath == str(chosen)


@pytest.mark.slow
def test_an_imported_nnunet_model_segments_into_the_scene(panel, qtHarness, scene, nnunetReference):
    """An nnU-Net v2 result folder (made by nnunetv2) imported into the library segments a real scan."""
    from pathlib import Path

    import SimpleITK as sitk

    from deepmed.zoo.package import import_package
    from DeepMedLib import ModelLibrary
    from DeepMedLib.SceneBridge import updateVolumeNodeFromImage

    model = import_package(Path((nnunetReference / "result_folder.txt").read_text()),
                           library=qtHarness.library)
    ModelLibrary.changed.emit(str(model.path))
    ui = panel.ui
    texts = [ui.modelComboBox.itemText(i) for i in range(ui.modelComboBox.count())]
    ui.modelComboBox.setCurrentIndex(texts.index(f"{model.title} (nnunet)"))
    assert "Labels: brain, bright" in ui.modelDescriptionLabel.text()
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "brain2 MR")
    updateVolumeNodeFromImage(volume, sitk.ReadImage(str(nnunetReference / "scan_0000.nii.gz")))
    volume.CreateDefaultDisplayNodes()
    panel.panel.inputSelectors[0].setCurrentNode(volume)
    ui.deviceComboBox.setCurrentText("cpu")
    ui.foldsComboBox.setCurrentIndex(1)  # fold 0 alone: seconds on a CPU
    ui.applyButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.run is None, timeout=300)
    assert qtHarness.messages == []
    output = panel.panel.lastOutput
    assert output is not None and output.IsA("vtkMRMLSegmentationNode")
    segmentation = output.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["brain", "bright"]
    assert output.GetNodeReference(output.GetReferenceImageGeometryReferenceRole()) is volume
    saveScreenshot(panel.parent, "run_panel_nnunet")


def test_results_are_shown_where_slicer_shows_them_tables_in_a_table_layout_sequences_playable(panel, qtHarness,
                                                                                                scene):
    """A table result switches to a layout with a table view (as Segment Statistics does); a sequence result
    shows the Sequences toolbar on its one browser, also when a re-run writes into the same sequence."""
    import SimpleITK as sitk
    import slicer

    from DeepMedLib import ResultNodes
    from DeepMedLib.BackgroundJob import JobResult
    from slicer_support import mrml_app

    layoutManager = mrml_app.current.layoutManager
    conventional = slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView
    assert layoutManager.layout == conventional
    table = ResultNodes.addTableFromRows([{"class": "left", "p_left": 0.9}], scene, "classes")
    panel.panel.onFinished(table, JobResult("succeeded", 0))
    assert layoutManager.layout == slicer.modules.tables.logic().GetLayoutWithTable(conventional) != conventional
    assert mrml_app.current.appLogic.GetSelectionNode().GetActiveTableID() == table.GetID()

    frames = [sitk.Image([4, 5, 6], sitk.sitkFloat32) + float(i) for i in range(3)]
    sequence = ResultNodes.addSequenceFromImages(frames, scene, "interpolation")
    sequence = ResultNodes.addSequenceFromImages(frames[:2], scene, "interpolation", sequenceNode=sequence)
    browsers = [b for b in scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")]
    assert len(browsers) == 1 and browsers[0].GetMasterSequenceNode() is sequence
    assert not slicer.modules.sequences.toolBarVisible
    panel.panel.onFinished(sequence, JobResult("succeeded", 0))
    assert slicer.modules.sequences.toolBarVisible
    assert slicer.modules.sequences.toolBarActiveBrowserNode is browsers[0]
    assert ResultNodes.proxyVolume(sequence) is browsers[0].GetProxyNode(sequence) is not None
