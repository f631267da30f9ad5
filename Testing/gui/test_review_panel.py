"""The DeepMed Review panel, end to end: real .ui, real widget code, real scene, real engine workers (PySide6
offscreen).

rank the pool (deepmed review) -> load a case -> edit its segmentation -> Accept (the label joins the dataset)
-> Skip -> Improve model (deepmed improve) -> the promoted version is what the Run panel runs.

The panel code runs with true_property (as under PythonQt); this test file reads widgets with methods."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from conftest import saveScreenshot
from test_data_panel import _linear

from DeepMedLib.Geometry import ijkToRasFromImage, ijkToRasFromNode
from DeepMedLib.SelfTestData import syntheticArrays, syntheticImage, writeSyntheticDataset

pytestmark = [pytest.mark.gui, pytest.mark.slow]

POOL_SEEDS = (4, 5, 6)


def datasetWithPool(folder):
    """The four labelled boxes cases the tiny model trained on, plus three unlabelled pool cases."""
    manifestPath = writeSyntheticDataset(folder)
    manifest = json.loads(manifestPath.read_text())
    truths = {}
    for seed in POOL_SEEDS:
        image, label = syntheticArrays(seed)
        sitk.WriteImage(syntheticImage(image, origin=(-10.0 - seed, 20.0, 5.0)), str(folder / f"u{seed}.nii.gz"))
        truths[f"u{seed}"] = label
    manifest["pool"] = [{"id": f"u{seed}", "image": f"u{seed}.nii.gz"} for seed in POOL_SEEDS]
    manifestPath.write_text(json.dumps(manifest, indent=2))
    return manifestPath, truths


def worldPoints(node, localHomogeneous) -> np.ndarray:
    """Points (4 x N homogeneous, in ``node``'s local RAS) -> world RAS (N x 3) through its parent transforms."""
    transform = vtk.vtkGeneralTransform()
    node.GetParentTransformNode().GetTransformToWorld(transform)
    return np.array([transform.TransformPoint(*point[:3]) for point in localHomogeneous.T])


def segmentation_labelmap(segmentationNode, name):
    import slicer

    segmentation = segmentationNode.GetSegmentation()
    segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
    return segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())


def cellTexts(table, column):
    return [table.item(row, column).text() for row in range(table.rowCount())]


def test_rank_load_edit_accept_improve_then_run_uses_the_promoted_version(openPanel, qtHarness, scene, tmp_path):
    import slicer

    from deepmed.data.manifest import Dataset
    from DeepMedLib import SceneBridge

    manifestPath, truths = datasetWithPool(tmp_path / "data")
    widget = openPanel("DeepMedReview")
    ui, panel = widget.ui, widget.panel
    assert [m.id for m in panel.models] == ["boxes"] and not ui.rankButton.isEnabled()  # no dataset yet
    ui.manifestPathLineEdit.typePath(str(manifestPath))
    ui.deviceComboBox.setCurrentText("cpu")
    assert ui.rankButton.isEnabled() and not ui.acceptButton.isEnabled()

    # ---- rank the pool: most uncertain first ----
    ui.rankButton.click()
    assert panel.rankRun is not None and ui.cancelRankButton.isEnabled() and not ui.rankButton.isEnabled()
    qtHarness.processEventsUntil(lambda: panel.rankRun is None, timeout=120)
    assert qtHarness.messages == []
    table = ui.casesTable
    assert sorted(cellTexts(table, 1)) == sorted(truths) and cellTexts(table, 3) == ["pending"] * 3
    scores = [float(text) for text in cellTexts(table, 2)]
    assert scores == sorted(scores, reverse=True)  # uncertainty strategy: least sure first
    assert (tmp_path / "data" / "review" / "ranking.csv").is_file()  # default folder: review/ beside the manifest
    saveScreenshot(widget.parent, "review_panel_ranked")

    # ---- load the first case: image, editable prediction, uncertainty overlay, all on the case's grid ----
    table.selectRow(0)
    loaded = panel.loaded
    first = loaded.ranked.case
    assert first == cellTexts(table, 1)[0] and ui.acceptButton.isEnabled() and ui.skipButton.isEnabled()
    fileImage = sitk.ReadImage(str(tmp_path / "data" / f"{first}.nii.gz"))
    assert SceneBridge.imageFromVolumeNode(loaded.volume).GetOrigin() == pytest.approx(fileImage.GetOrigin())
    assert slicer.util.arrayFromVolume(loaded.volume).shape == truths[first].shape
    assert SceneBridge.segmentNames(loaded.segmentation) == ["box", "core"]
    assert loaded.segmentation.GetNodeReference(loaded.segmentation.GetReferenceImageGeometryReferenceRole()) \
        is loaded.volume
    assert loaded.uncertainty is not None
    uncertainty = slicer.util.arrayFromVolume(loaded.uncertainty)
    assert uncertainty.shape == truths[first].shape and uncertainty.min() >= 0.0 and uncertainty.max() <= 1.0
    assert not loaded.correctedByHand()

    # ---- under a registration (rotated + translated parent transform) every loaded node stays on the case's
    # grid in world space, and Accept below still writes the label on the file's grid ----
    transform, matrix = _linear(scene)
    for node in (loaded.volume, loaded.segmentation, loaded.uncertainty):
        node.SetAndObserveTransformNodeID(transform.GetID())
    fileGrid = ijkToRasFromImage(fileImage)
    size = np.array(fileImage.GetSize()) - 1
    corners = np.array([[i, j, k, 1.0] for i in (0, size[0]) for j in (0, size[1]) for k in (0, size[2])]).T
    expected = (matrix @ fileGrid @ corners).T[:, :3]
    for node in (loaded.volume, loaded.uncertainty):
        assert worldPoints(node, ijkToRasFromNode(node) @ corners) == pytest.approx(expected, abs=1e-4)
    segment = segmentation_labelmap(loaded.segmentation, "box")
    imageToLocal = vtk.vtkMatrix4x4()
    segment.GetImageToWorldMatrix(imageToLocal)  # the segmentation's own frame, below its parent transform
    local = np.array([[imageToLocal.GetElement(r, c) for c in range(4)] for r in range(4)])
    assert worldPoints(loaded.segmentation, local @ corners) == pytest.approx(expected, abs=1e-4)
    assert loaded.proposed.shape == truths[first].shape

    # ---- correct it (as the Segment Editor would: the true label per segment) and Accept ----
    segmentation = loaded.segmentation.GetSegmentation()
    for name, value in (("box", 1), ("core", 2)):
        slicer.util.updateSegmentBinaryLabelmapFromArray((truths[first] == value).astype(np.uint8),
                                                         loaded.segmentation,
                                                         segmentation.GetSegmentIdBySegmentName(name), loaded.volume)
    assert loaded.correctedByHand()
    ui.acceptButton.click()
    assert qtHarness.messages == [], qtHarness.messages
    assert cellTexts(table, 3)[0] == "accepted"
    dataset = Dataset.load(manifestPath)
    accepted = dataset.case(first)
    assert first not in {c.id for c in dataset.pool} and first in {c.id for c in dataset.training}
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(accepted.label))), truths[first])
    stored = sitk.ReadImage(str(accepted.label))  # on the file's grid, not the world's
    assert stored.GetOrigin() == pytest.approx(fileImage.GetOrigin()) and stored.GetSize() == fileImage.GetSize()
    assert stored.GetDirection() == pytest.approx(fileImage.GetDirection(), abs=1e-6)
    record = json.loads(manifestPath.read_text())
    entry = next(e for e in record["training"] if e.get("id") == first)
    assert entry["provenance"]["proposed_by"] == "boxes" and entry["provenance"]["model_version"] == "1"
    assert entry["provenance"]["corrected_by_hand"] is True

    # ---- the next pending case was loaded; Skip leaves it unlabelled ----
    second = panel.loaded.ranked.case
    assert second == cellTexts(table, 1)[1] and scene.GetNodesByName(first).GetNumberOfItems() == 0
    ui.skipButton.click()
    assert cellTexts(table, 3)[:2] == ["accepted", "skipped"] and second in {c.id for c in Dataset.load(manifestPath).pool}

    # ---- improve in the background (the user keeps reviewing meanwhile) ----
    ui.improveMinutesSpinBox.setValue(0.1)          # 6 s of fine-tuning
    ui.improveToleranceSpinBox.setValue(1.0)        # promote whatever the Dice: the Run panel must then use @2
    ui.improveButton.click()
    assert panel.improveRun is not None and ui.cancelImproveButton.isEnabled() and ui.acceptButton.isEnabled()
    qtHarness.processEventsUntil(lambda: panel.improveRun is None, timeout=180)
    assert qtHarness.messages == [], qtHarness.messages
    comparison = panel.comparison
    assert comparison is not None and comparison.promoted and comparison.newModel == "boxes@2"
    assert cellTexts(ui.comparisonTable, 0) == ["box", "core", "mean"]
    assert all(0.0 <= float(text) <= 1.0 for column in (1, 2) for text in cellTexts(ui.comparisonTable, column))
    assert ui.improveResultLabel.text().startswith("Promoted boxes@2")
    assert "boxes@2, 2 versions" in ui.modelComboBox.currentText()
    saveScreenshot(widget.parent, "review_panel_improved")

    # ---- the Run panel lists one 'boxes', the promoted version, and runs it ----
    run = openPanel("DeepMedRun")
    assert [m.id for m in run.panel.models] == ["boxes"] and run.panel.currentModel().path.name == "boxes@2"
    assert "Library version 2" in run.ui.modelDescriptionLabel.text()
    run.panel.inputSelectors[0].setCurrentNode(panel.loaded.volume)
    run.ui.deviceComboBox.setCurrentText("cpu")
    run.ui.applyButton.click()
    assert any(part.endswith("boxes@2") for part in run.panel.run.job.command)
    qtHarness.processEventsUntil(lambda: run.panel.run is None, timeout=120)
    assert qtHarness.messages == [] and run.panel.lastOutput is not None


def test_a_dataset_without_a_pool_is_one_line_in_the_panel_and_nothing_changes(openPanel, qtHarness, tmp_path):
    manifestPath = writeSyntheticDataset(tmp_path / "data")  # labelled cases only
    widget = openPanel("DeepMedReview")
    ui, panel = widget.ui, widget.panel
    ui.manifestPathLineEdit.typePath(str(manifestPath))
    ui.rankButton.click()
    qtHarness.processEventsUntil(lambda: panel.rankRun is None, timeout=120)
    kind, text = qtHarness.messages[-1]
    assert kind == "error" and "dataset.json" in text and "'pool'" in text and "Traceback" not in text
    assert ui.statusLabel.text().startswith("Ranking failed: ") and ui.casesTable.rowCount() == 0
    assert ui.rankButton.isEnabled() and not ui.cancelRankButton.isEnabled() and not ui.acceptButton.isEnabled()
    assert not (tmp_path / "data" / "review" / "ranking.csv").exists()
