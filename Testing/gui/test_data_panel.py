"""The DeepMed Data panel: cases from the scene and from folders, check status, split, export (PySide6 offscreen)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import OBLIQUE, saveScreenshot
from naming import names

from DeepMedLib import SceneBridge
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
