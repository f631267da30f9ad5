"""Outputs that are not on the input's grid, on real MRML (slicer-core): own-grid volumes, tables, sequences."""

import csv

import numpy as np
import SimpleITK as sitk
import slicer.util
from conftest import OBLIQUE, make_image
from naming import naming

from DeepMedLib import Outputs, ResultNodes, SceneBridge
from DeepMedLib.Geometry import ijkToRasFromImage, ijkToRasFromNode


def _input(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "input")
    SceneBridge.updateVolumeNodeFromImage(node, make_image(direction=OBLIQUE, spacing=(0.7, 1.3, 3.1)))
    return node


def test_a_volume_on_its_own_grid_keeps_that_grid_and_sits_beside_the_input(scene):
    reference = _input(scene)
    fine = make_image(direction=OBLIQUE, spacing=(0.35, 0.65, 1.55), shape_zyx=(10, 18, 20))
    node = Outputs.addOutput("image", fine, reference, [], "input fine")
    assert node.IsA("vtkMRMLScalarVolumeNode") and node.GetName() == "input fine"
    np.testing.assert_allclose(ijkToRasFromNode(node), ijkToRasFromImage(fine), atol=1e-9)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), sitk.GetArrayFromImage(fine))
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert shNode.GetItemParent(shNode.GetItemByDataNode(node)) == shNode.GetItemParent(
        shNode.GetItemByDataNode(reference))


def test_a_generated_volume_needs_no_input(scene):
    generated = make_image(shape_zyx=(10, 9, 8))
    node = Outputs.addOutput("image", generated, None, [], "generated")
    assert node.GetScene() is scene and slicer.util.arrayFromVolume(node).shape == (10, 9, 8)


def test_case_level_values_become_a_table_with_numeric_columns(scene, tmp_path):
    path = tmp_path / "output.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["class", "p_female", "p_male"])
        writer.writeheader()
        writer.writerow({"class": "male", "p_female": "0.125", "p_male": "0.875"})
    rows = Outputs.readOutput("table", path)
    node = Outputs.addOutput("table", rows, _input(scene), [], "input sex")
    assert node.IsA("vtkMRMLTableNode") and node.GetNumberOfRows() == 1 and node.GetNumberOfColumns() == 3
    assert node.GetCellText(0, 0) == "male" and node.GetColumnName(1) == "p_female"
    assert node.GetTable().GetColumn(2).GetClassName() == "vtkDoubleArray"
    assert node.GetTable().GetValue(0, 2).ToDouble() == 0.875


def test_a_4d_image_becomes_a_browsable_sequence_with_each_frames_geometry(scene, tmp_path):
    frames = [make_image(direction=OBLIQUE, spacing=(1.0, 1.2, 2.0), shape_zyx=(8, 7, 6), seed=i) for i in range(4)]
    path = tmp_path / "output.nrrd"
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    back = Outputs.readOutput("sequence", path)
    assert len(back) == 4
    node = Outputs.addOutput("sequence", back, _input(scene), [], "interpolation")
    assert node.IsA("vtkMRMLSequenceNode") and node.GetNumberOfDataNodes() == 4
    for frame, volume in zip(frames, ResultNodes.sequenceFrames(node), strict=True):
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(volume), sitk.GetArrayFromImage(frame))
        np.testing.assert_allclose(ijkToRasFromNode(volume), ijkToRasFromImage(frame), atol=1e-6)
    proxy = ResultNodes.proxyVolume(node)
    assert proxy is not None and proxy.IsA("vtkMRMLScalarVolumeNode")
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(proxy), sitk.GetArrayFromImage(frames[0]))


def test_an_unknown_output_kind_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match=naming("'hologram'")):
        Outputs.nodeClass("hologram")


def test_overlapping_masks_become_overlapping_segments_with_the_cards_names(scene, tmp_path):
    """A tumour model's nested regions (whole tumour contains the core): each voxel may be in several segments."""
    reference = _input(scene)
    shape = sitk.GetArrayFromImage(SceneBridge.imageFromVolumeNode(reference)).shape
    whole = np.zeros(shape, np.uint8)
    whole[1:5, 1:6, 1:7] = 1
    core = np.zeros(shape, np.uint8)
    core[2:4, 2:4, 2:5] = 1
    masks = sitk.GetImageFromArray(np.stack([core, whole], axis=-1), isVector=True)
    masks.CopyInformation(SceneBridge.imageFromVolumeNode(reference))
    path = tmp_path / "output.seg.nrrd"
    sitk.WriteImage(masks, str(path))
    labels = [{"value": 1, "name": "TC", "color": [255, 0, 0]}, {"value": 2, "name": "WT", "color": [0, 255, 0]}]
    node = Outputs.addOutput("overlapping_masks", Outputs.readOutput("overlapping_masks", path), reference,
                             labels, "tumour")
    assert SceneBridge.segmentNames(node) == ["TC", "WT"]
    segmentation = node.GetSegmentation()
    for index, expected in enumerate([core, whole]):
        got = slicer.util.arrayFromSegmentBinaryLabelmap(node, segmentation.GetNthSegmentID(index), reference)
        np.testing.assert_array_equal(got > 0, expected > 0)
    assert int(core.sum()) > 0 and bool(((core > 0) & (whole > 0)).any())  # they do overlap
