"""Refine mode of the Run panel: points placed on a volume under a rotated and translated parent transform
refine a segment in place through one warm worker process (real .ui, real scene, real interactive model)."""

import os
import shutil
import signal

import numpy as np
import pytest
import vtk
from conftest import OBLIQUE, saveScreenshot

from DeepMedLib.SelfTestData import TINY_SETTINGS, syntheticCase

pytestmark = pytest.mark.gui


@pytest.fixture(scope="session")
def interactiveModel(tinyModelLibrary, tmp_path_factory):
    """A tiny interactive model trained with simulated clicks on the tiny library's data (once a session)."""
    import deepmed

    overrides = [f"{key}={value}".replace(" ", "") for key, value in TINY_SETTINGS.items()] + ["app=interactive"]
    folder = tmp_path_factory.mktemp("interactive") / "clicks"
    deepmed.train(tinyModelLibrary[1], folder, epochs=6, device="cpu", overrides=overrides, progress="none")
    return folder


def childProcesses() -> set:
    """The process ids whose parent is this test process (from /proc)."""
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as stream:
                fields = stream.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.add(int(entry))
    return children


def rotatedTranslated(scene):
    """A parent transform: 30 degrees about an oblique axis, then a translation."""
    transform = vtk.vtkTransform()
    transform.Translate(12.0, -7.5, 20.0)
    transform.RotateWXYZ(30.0, 0.3, 0.5, 0.8)
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    node.SetMatrixTransformToParent(transform.GetMatrix())
    matrix = np.array([[transform.GetMatrix().GetElement(r, c) for c in range(4)] for r in range(4)])
    return node, matrix


def worldPointOfVoxel(volume, toParent, kji):
    ijkToRas = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijkToRas)
    local = np.array(ijkToRas.MultiplyPoint([float(kji[2]), float(kji[1]), float(kji[0]), 1.0]))
    return (toParent @ local)[:3], local[:3]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="counts child processes in /proc")
def test_points_refine_the_segment_in_place_through_one_warm_worker(qtHarness, openPanel, scene,
                                                                    interactiveModel):
    import slicer

    from DeepMedLib import ModelLibrary

    shutil.copytree(interactiveModel, qtHarness.library / "clicks")
    ModelLibrary.changed.emit(str(qtHarness.library / "clicks"))
    widget = openPanel("DeepMedRun")
    panel, ui = widget.panel, widget.ui
    # property()/setProperty(): the same in a test module whichever way PySide's true_property feature is
    ui.modelComboBox.setProperty("currentIndex", [m.id for m in panel.models].index("clicks"))
    modes = panel.currentModel().modes
    ui.modeComboBox.setProperty("currentIndex", [mode.inputs for mode in modes].index("clicks"))
    section = panel.refine
    assert not section.box.isHidden() and ui.applyButton.isHidden()  # offered from the card's clicks mode
    transformNode, toParent = rotatedTranslated(scene)
    volume, truth = syntheticCase(scene, seed=21, direction=OBLIQUE, name="patient MR")
    volume.SetAndObserveTransformNodeID(transformNode.GetID())
    panel.inputSelectors[0].setCurrentNode(volume)
    assert section.positiveButton.property("enabled") and section.labelComboBox.property("currentText") == "box"

    section.positiveButton.click()  # Slicer's place mode into the panel's positive list
    interaction = slicer.app.applicationLogic().GetInteractionNode()
    selection = slicer.app.applicationLogic().GetSelectionNode()
    positives = section.pointList(True)
    assert interaction.GetCurrentInteractionMode() == interaction.Place
    assert selection.GetActivePlaceNodeID() == positives.GetID()

    inside = np.argwhere(truth == 1)
    first, local = worldPointOfVoxel(volume, toParent, inside[len(inside) // 2])
    before = childProcesses()

    def refined(count):
        failed = lambda: section.lastResponse is not None and not section.lastResponse["ok"]  # noqa: E731
        qtHarness.processEventsUntil(lambda: failed() or (section.refines >= count and not section.logic.worker.busy),
                                     timeout=120)
        assert section.lastResponse["ok"], section.lastResponse
        segmentation = section.segmentationNode
        segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("box")
        return np.array(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume)) > 0

    positives.AddControlPointWorld(vtk.vtkVector3d(*first))  # what a click in a slice view does
    one = refined(1)
    worker = section.logic.worker
    pid = worker.pid
    assert pid in childProcesses() and childProcesses() - before == {pid}
    sent = section.logic.lastRequest["clicks"]
    assert sent["coordinates"] == "LPS"  # the volume's local frame, in LPS: through the inverse transform
    np.testing.assert_allclose(sent["clicks"][0]["point"], [-local[0], -local[1], local[2]], atol=1e-6)
    assert np.array_equal(one, section.logic.lastMask)  # the segment holds the result voxel for voxel
    assert one.any()

    second, _ = worldPointOfVoxel(volume, toParent, inside[0])
    positives.AddControlPointWorld(vtk.vtkVector3d(*second))
    two = refined(2)
    section.negativeButton.click()
    negatives = section.pointList(False)
    assert selection.GetActivePlaceNodeID() == negatives.GetID()
    outside, _ = worldPointOfVoxel(volume, toParent, np.argwhere(truth == 0)[0])
    negatives.AddControlPointWorld(vtk.vtkVector3d(*outside))
    three = refined(3)
    assert len(section.logic.lastRequest["clicks"]["clicks"]) == 3
    assert not np.array_equal(one, two) or not np.array_equal(two, three)  # the points change the segment

    negatives.RemoveNthControlPoint(0)  # undo the negative point
    assert np.array_equal(refined(4), two)
    positives.RemoveNthControlPoint(1)  # and the second positive one
    assert np.array_equal(refined(5), one)

    assert worker.pid == pid and worker.starts == 1 and section.logic.volumeWrites == 1
    assert childProcesses() - before == {pid}  # no process per click
    segmentation = section.segmentationNode
    assert segmentation.GetTransformNodeID() == transformNode.GetID()  # in the volume's frame
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1  # an ordinary segment, updated in place
    assert "Refined box from 1 point(s)" in section.statusLabel.property("text")
    assert qtHarness.messages == [] and qtHarness.uncaught == []
    saveScreenshot(widget.parent, "run_panel_refine")  # Resources/Screenshots/run_panel_refine.png

    os.kill(pid, signal.SIGKILL)  # a worker that died is started again, with its model, by the next point
    worker.process.wait()
    positives.AddControlPointWorld(vtk.vtkVector3d(*second))
    assert np.array_equal(refined(6), two)
    assert worker.starts == 2 and worker.pid != pid and section.logic.volumeWrites == 1

    negatives.AddControlPointWorld(vtk.vtkVector3d(*outside))
    section.refineNow()  # a refine still running when the scene closes
    panel.onSceneClosing()  # File > Close Scene: the worker ends
    assert not worker.alive and childProcesses() - before == set()
    assert "worker was stopped" in section.lastResponse["error"] and qtHarness.uncaught == []
