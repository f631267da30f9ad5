"""The DeepMed Data panel: cases from the scene and from folders, check status, split, export; the pool of
unlabelled cases and acceptLabel (a corrected segmentation saved as a case's label) (PySide6 offscreen)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import OBLIQUE, saveScreenshot
from DeepMedDataLib.DataLogic import SceneCase
from naming import names

from deepmed.data import Case, Dataset
from deepmed.data.labels import add_pool
from DeepMedLib import SceneBridge
from DeepMedLib.Geometry import ijkToRasFromNode, setImageGeometryFromIjkToRas, setNodeIjkToRas
from DeepMedLib.SelfTestData import syntheticArrays, syntheticCase, syntheticImage, writeSyntheticDataset

pytestmark = pytest.mark.gui
LABELS = [{"value": 1, "name": "box", "color": [200, 60, 60]}, {"value": 2, "name": "core", "color": [60, 60, 200]}]


@pytest.fixture
def panel(openPanel):
    return openPanel("DeepMedData")


def addSceneCase(panel, scene, index, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
    volume, _ = syntheticCase(scene, seed=index, direction=direction, name=f"MR {index}")
    _, label = syntheticArrays(index)
    labelImage = syntheticImage(label, direction=direction)
    segmentation = SceneBridge.addSegmentationFromLabelImage(labelImage, volume, LABELS, f"segmentation {index}")
    panel.panel.volumeSelectors[0].setCurrentNode(volume)
    panel.ui.labelSelector.setCurrentNode(segmentation)
    panel.ui.caseIdLineEdit.setText(f"patient{index}")
    panel.ui.addCaseButton.click()
    return volume, label


def test_scene_cases_export_split_and_check(panel, qtHarness, scene, tmp_path):
    trainWidget = qtHarness.modules.select("DeepMedTrain")
    qtHarness.modules.select("DeepMedData")
    ui = panel.ui
    ui.channelNamesLineEdit.setText("MR")
    ui.channelNamesLineEdit.editingFinished.emit()
    truths = [addSceneCase(panel, scene, i, direction=OBLIQUE if i == 0 else (1, 0, 0, 0, 1, 0, 0, 0, 1))
              for i in range(4)]
    assert qtHarness.messages == []
    assert ui.casesTable.rowCount() == 4 and ui.casesTable.item(0, 0).text() == "patient0"
    assert ui.casesTable.item(1, 2).text() == "segmentation 1"
    assert not ui.exportButton.isEnabled()
    ui.datasetNameLineEdit.setText("boxes")
    ui.exportFolderLineEdit.typePath(str(tmp_path / "boxes"))
    assert ui.exportButton.isEnabled()
    ui.exportButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.checkRun is None, timeout=120)
    assert qtHarness.messages == []
    assert [ui.casesTable.item(r, 3).text() for r in range(4)] == ["OK"] * 4
    assert ui.statusLabel.text().endswith("all cases OK; ready to train in DeepMed Train.")
    assert trainWidget.ui.datasetPathLineEdit.currentPath == str(tmp_path / "boxes" / "dataset.json")  # offered there
    qtHarness.processEventsUntil(lambda: trainWidget.panel.applicationsJob is None, timeout=60)  # engine's list
    assert trainWidget.ui.trainButton.isEnabled()
    manifest = json.loads((tmp_path / "boxes" / "dataset.json").read_text())
    assert manifest["labels"] == {"background": 0, "box": 1, "core": 2}
    assert manifest["channel_names"] == {"0": "MR"} and len(manifest["splits"]) == 1
    assert sorted(i for ids in manifest["splits"][0].values() for i in ids) == [f"patient{i}" for i in range(4)]
    # the exported label lies voxel for voxel on the exported image (oblique case included)
    image = sitk.ReadImage(str(tmp_path / "boxes" / "imagesTr" / "patient0_0000.nii.gz"))
    label = sitk.ReadImage(str(tmp_path / "boxes" / "labelsTr" / "patient0.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), truths[0][1])
    np.testing.assert_allclose(image.GetDirection(), OBLIQUE, atol=1e-6)
    saveScreenshot(panel.parent, "data_panel_exported")


def test_export_never_overwrites_and_duplicate_ids_are_refused(panel, qtHarness, scene, tmp_path):
    ui = panel.ui
    addSceneCase(panel, scene, 0)
    addSceneCase(panel, scene, 0)  # same id again
    assert "case patient0: id used twice" in qtHarness.messages[-1][1]
    assert ui.casesTable.rowCount() == 1
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    ui.exportFolderLineEdit.typePath(str(existing))
    ui.exportButton.click()
    assert names(qtHarness.messages[-1][1], str(existing))
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_folder_scan_and_manifest_show_check_status(panel, qtHarness, tmp_path):
    ui = panel.ui
    manifest = writeSyntheticDataset(tmp_path / "boxes")
    (tmp_path / "boxes" / "case2_seg.nii.gz").write_bytes(b"broken")  # a damaged label file
    ui.folderPathLineEdit.typePath(str(tmp_path / "boxes"))
    ui.labelPatternLineEdit.setText("_seg")
    ui.scanFolderButton.click()
    assert qtHarness.messages == [] and ui.casesTable.rowCount() == 4
    ui.manifestPathLineEdit.typePath(str(manifest))
    ui.loadManifestButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.checkRun is None, timeout=120)
    statuses = [ui.casesTable.item(r, 3).text() for r in range(4)]
    assert statuses[0] == statuses[1] == statuses[3] == "OK"
    assert statuses[2].startswith("case2_seg.nii.gz: cannot read image")
    assert "1 problem(s)" in ui.statusLabel.text()
    saveScreenshot(panel.parent, "data_panel_check")


# ---- the pool of unlabelled cases, and accepting a corrected label ----------------------------------------
def loadManifest(panel, qtHarness, manifest):
    panel.ui.manifestPathLineEdit.typePath(str(manifest))
    panel.ui.loadManifestButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.checkRun is None, timeout=120)


def test_scene_volumes_and_a_folder_join_the_pool_of_the_loaded_manifest(panel, qtHarness, scene, tmp_path):
    ui = panel.ui
    manifest = writeSyntheticDataset(tmp_path / "boxes", cases=3)
    assert not ui.addFolderPoolButton.isEnabled()  # no manifest yet: no pool to add to
    loadManifest(panel, qtHarness, manifest)
    volume, _ = syntheticCase(scene, seed=5, direction=OBLIQUE, name="new scan")
    panel.panel.volumeSelectors[0].setCurrentNode(volume)
    ui.caseIdLineEdit.setText("new1")
    ui.addPoolCaseButton.click()
    assert qtHarness.messages == []
    pool = Dataset.load(manifest).pool
    assert [(c.id, c.images) for c in pool] == [("new1", [tmp_path / "boxes" / "imagesPool" / "new1_0000.nii.gz"])]
    written = sitk.ReadImage(str(pool[0].images[0]))  # the volume's voxels on the volume's exact grid
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(
        SceneBridge.imageFromVolumeNode(volume)))
    np.testing.assert_allclose(written.GetDirection(), OBLIQUE, atol=1e-6)
    with pytest.raises(ValueError, match="new1"):  # the same id again is refused, nothing written
        panel.logic.addScenePool(manifest, [SceneCase("new1", [volume], pool=True)])
    assert len(Dataset.load(manifest).pool) == 1
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for index in (7, 8):
        sitk.WriteImage(syntheticImage(syntheticArrays(index)[0]), str(folder / f"scan{index}.nii.gz"))
    ui.folderPathLineEdit.typePath(str(folder))
    ui.addFolderPoolButton.click()
    assert qtHarness.messages == []
    assert [c.id for c in Dataset.load(manifest).pool] == ["new1", "scan7", "scan8"]
    rows = [(ui.casesTable.item(r, 0).text(), ui.casesTable.item(r, 2).text()) for r in range(ui.casesTable.rowCount())]
    assert rows[-3:] == [("new1", "pool (unlabelled)"), ("scan7", "pool (unlabelled)"), ("scan8", "pool (unlabelled)")]
    assert len(rows) == 6 and "2 unlabelled" in ui.statusLabel.text()
    saveScreenshot(panel.parent, "data_panel_pool")


def test_scene_pool_cases_are_exported_into_the_manifest_pool(panel, qtHarness, scene, tmp_path):
    ui = panel.ui
    for index, pool in ((0, False), (1, False), (2, True)):
        volume, _ = syntheticCase(scene, seed=index, name=f"MR {index}")
        panel.panel.volumeSelectors[0].setCurrentNode(volume)
        label = SceneBridge.addSegmentationFromLabelImage(syntheticImage(syntheticArrays(index)[1]), volume, LABELS,
                                                          f"seg {index}")
        ui.labelSelector.setCurrentNode(label)
        ui.caseIdLineEdit.setText(f"p{index}")
        (ui.addPoolCaseButton if pool else ui.addCaseButton).click()
    assert ui.casesTable.item(2, 2).text() == "pool (unlabelled)"
    ui.exportFolderLineEdit.typePath(str(tmp_path / "out"))
    ui.exportButton.click()
    qtHarness.processEventsUntil(lambda: panel.panel.checkRun is None, timeout=120)
    assert qtHarness.messages == []
    data = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert [e["id"] for e in data["training"]] == ["p0", "p1"]
    assert data["pool"] == [{"id": "p2", "image": ["imagesPool/p2_0000.nii.gz"]}]


def _linear(scene, rotation=(20.0, -35.0, 60.0), translation=(-7.0, 12.5, 30.0)):
    import vtk

    transform = vtk.vtkTransform()
    transform.Translate(*translation)
    for axis, angle in zip("XYZ", rotation):
        getattr(transform, f"Rotate{axis}")(angle)
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    node.SetMatrixTransformToParent(transform.GetMatrix())
    return node, np.array([[transform.GetMatrix().GetElement(r, c) for c in range(4)] for r in range(4)])


def test_accept_label_saves_the_corrected_segmentation_on_the_case_grid(panel, qtHarness, scene, tmp_path):
    manifest = writeSyntheticDataset(tmp_path / "boxes", cases=2)
    image, truth = syntheticArrays(5)
    sitk.WriteImage(syntheticImage(image, direction=OBLIQUE), str(tmp_path / "boxes" / "u5.nii.gz"))
    add_pool(manifest, [Case("u5", [tmp_path / "boxes" / "u5.nii.gz"])])
    # the case's image as loaded in Slicer, under a registration transform
    reference = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "u5")
    SceneBridge.updateVolumeNodeFromImage(reference, sitk.ReadImage(str(tmp_path / "boxes" / "u5.nii.gz")))
    transform, matrix = _linear(scene)
    reference.SetAndObserveTransformNodeID(transform.GetID())
    # the model's proposal, corrected by hand (the core removed, the box grown): a segmentation NOT under the
    # transform, holding the voxels where the transformed image is in the world
    corrected = truth.copy()
    corrected[corrected == 2] = 1
    corrected[3, 5:15, 6:18] = 1
    world = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "u5 in world")
    world.SetAndObserveImageData(reference.GetImageData())
    setNodeIjkToRas(world, matrix @ ijkToRasFromNode(reference))
    proposal = sitk.GetImageFromArray(corrected)
    setImageGeometryFromIjkToRas(proposal, ijkToRasFromNode(world))
    segmentation = SceneBridge.addSegmentationFromLabelImage(proposal, world, LABELS, "u5 corrected")
    segmentation.SetAndObserveTransformNodeID(None)
    logic = panel.logic
    written = logic.acceptLabel(manifest, "u5", segmentation, reference, "boxes@1")
    assert written == tmp_path / "boxes" / "labels" / "u5_label.v1.nii.gz"
    stored = sitk.ReadImage(str(written))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(stored), corrected)  # voxel for voxel
    np.testing.assert_allclose(stored.GetDirection(), OBLIQUE, atol=1e-6)  # on the file's grid, not the world's
    case = Dataset.load(manifest).case("u5")
    assert "u5" in [c.id for c in Dataset.load(manifest).training] and not Dataset.load(manifest).pool
    assert (case.provenance.current.proposed_by, case.provenance.current.model_version) == ("boxes", "1")
    # a second correction keeps the first as history; a label map node on the reference's grid works too
    second = np.zeros_like(corrected)
    second[4:9, 6:12, 7:15] = 2
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "second")
    secondImage = sitk.GetImageFromArray(second)
    setImageGeometryFromIjkToRas(secondImage, ijkToRasFromNode(reference))
    SceneBridge.updateVolumeNodeFromImage(labelmap, secondImage)
    again = logic.acceptLabel(manifest, "u5", labelmap, reference)
    assert again.name == "u5_label.v2.nii.gz"
    case = Dataset.load(manifest).case("u5")
    assert [h.label for h in case.provenance.history] == [written] and written.is_file()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(again))), second)
    # a segment that is not one of the manifest's labels: refused, naming it; nothing written
    segmentation.GetSegmentation().AddEmptySegment("tumour", "tumour")
    with pytest.raises(ValueError, match="tumour"):
        logic.acceptLabel(manifest, "u5", segmentation, reference, "boxes@1")
    assert sorted(p.name for p in (tmp_path / "boxes" / "labels").iterdir()) == ["u5_label.v1.nii.gz",
                                                                                   "u5_label.v2.nii.gz"]
    loadManifest(panel, qtHarness, manifest)
    assert qtHarness.messages == []
    table = panel.ui.casesTable
    assert [(table.item(r, 0).text(), table.item(r, 2).text()) for r in range(table.rowCount())][-1] == \
        ("u5", "u5_label.v2.nii.gz")
    saveScreenshot(panel.parent, "data_panel_accepted_label")
