"""The MRML bridge on real MRML (slicer-core): exact geometry both ways, label names/colours, outputs."""

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import slicer.util
from conftest import LEFT_HANDED, OBLIQUE, PERMUTED, make_image
from naming import naming

from DeepMedLib import SceneBridge
from DeepMedLib.Geometry import ijkToRasFromImage, ijkToRasFromNode

GEOMETRIES = {
    "axial": dict(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), spacing=(1.0, 1.0, 1.0)),
    "oblique-anisotropic": dict(direction=OBLIQUE, spacing=(0.7, 1.3, 3.1)),
    "flipped": dict(direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), spacing=(0.5, 0.5, 2.0)),
    "left-handed": dict(direction=LEFT_HANDED, spacing=(0.9, 0.9, 1.7)),
    "permuted": dict(direction=PERMUTED, spacing=(2.0, 0.8, 1.1)),
}


def voxelWorldRas(node, ijk) -> np.ndarray:
    return (ijkToRasFromNode(node) @ np.array([*ijk, 1.0]))[:3]


def addVolume(scene, image, name="input", labelmap=False):
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    SceneBridge.updateVolumeNodeFromImage(node, image)
    node.CreateDefaultDisplayNodes()
    return node


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=list(GEOMETRIES))
def test_volume_round_trip_is_exact(scene, geometry):
    image = make_image(**GEOMETRIES[geometry])
    node = addVolume(scene, image)
    back = SceneBridge.imageFromVolumeNode(node)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-12)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-12)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=list(GEOMETRIES))
def test_voxels_sit_where_itk_says_in_ras(scene, geometry):
    """Every voxel's RAS position in Slicer is its ITK LPS physical point with x and y negated."""
    image = make_image(**GEOMETRIES[geometry])
    node = addVolume(scene, image)
    for ijk in [(0, 0, 0), (7, 0, 0), (0, 6, 0), (0, 0, 5), (3, 4, 2)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        np.testing.assert_allclose(voxelWorldRas(node, ijk), lps * [-1, -1, 1], atol=1e-9)
        assert node.GetImageData().GetScalarComponentAsDouble(*ijk, 0) == pytest.approx(image.GetPixel(ijk))


def test_file_written_by_slicer_reads_back_in_itk(scene, tmp_path):
    """Slicer's own NRRD writer and SimpleITK agree on where voxels are (left-handed K flip included)."""
    image = make_image(direction=LEFT_HANDED, spacing=(0.9, 0.9, 1.7))
    node = addVolume(scene, image)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "written.nrrd"))
    assert storage.WriteData(node)
    read = sitk.ReadImage(str(tmp_path / "written.nrrd"))
    for ijk in [(0, 0, 0), (7, 6, 5), (2, 3, 4)]:
        point = image.TransformIndexToPhysicalPoint(ijk)
        readIndex = read.TransformPhysicalPointToIndex(point)
        assert read.GetPixel(readIndex) == pytest.approx(image.GetPixel(ijk))


def test_segmentation_from_label_image_has_model_names_colours_and_empty_segments(scene):
    image = make_image(direction=OBLIQUE)
    reference = addVolume(scene, image)
    array = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    array[1:3, 2:5, 2:6] = 1
    array[4:6, 1:3, 1:3] = 3
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(image)
    labels = [{"value": 0, "name": "background", "color": [0, 0, 0]},
              {"value": 1, "name": "liver", "color": [221, 130, 101]},
              {"value": 2, "name": "spleen", "color": [157, 108, 162]},
              {"value": 3, "name": "tumour", "color": [255, 0, 0], "snomed": "108369006"}]
    nodesBefore = scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode")
    seg = SceneBridge.addSegmentationFromLabelImage(label, reference, labels, "prediction")
    assert SceneBridge.segmentNames(seg) == ["liver", "spleen", "tumour"]  # by label value
    segmentation = seg.GetSegmentation()
    liver = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("liver"))
    np.testing.assert_allclose(liver.GetColor(), [221 / 255, 130 / 255, 101 / 255], atol=1e-6)
    tumour = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("tumour"))
    assert tumour.HasTag("DeepMed.SNOMED") and not liver.HasTag("DeepMed.SNOMED")
    # the codes a DICOM SEG gets, as Slicer's terminology tag (its DICOM export writes them)
    assert tumour.GetTerminology().split("~")[1:3] == ["SCT^91723000^Anatomical Structure",
                                                                "SCT^108369006^tumour"]
    assert liver.GetTerminology().split("~")[1:3] == ["SCT^85756007^Tissue"] * 2
    # voxel for voxel: exporting the segments on the reference grid gives back the label image
    back, nameToValue = SceneBridge.labelImageFromSegmentation(seg, reference, {"liver": 1, "spleen": 2, "tumour": 3})
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == nodesBefore  # temporaries removed
    assert seg.GetName() == "prediction"
    closedSurface = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    assert not seg.GetSegmentation().ContainsRepresentation(closedSurface)
    shown = SceneBridge.addSegmentationFromLabelImage(label, reference, labels, "in 3D", showIn3D=True)
    assert shown.GetSegmentation().ContainsRepresentation(closedSurface)


def test_segmentation_to_label_numbers_segments_by_name_across_cases(scene):
    image = make_image()
    reference = addVolume(scene, image)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "manual")
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    shape = sitk.GetArrayViewFromImage(image).shape
    for name, box in [("kidney", np.s_[0:2, 0:3, 0:3]), ("cyst", np.s_[3:5, 3:6, 3:6])]:
        segmentId = seg.GetSegmentation().AddEmptySegment(name, name)
        mask = np.zeros(shape, np.uint8)
        mask[box] = 1
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, seg, segmentId, reference)
    labelImage, nameToValue = SceneBridge.labelImageFromSegmentation(seg, reference, {"cyst": 1})
    assert nameToValue == {"cyst": 1, "kidney": 2}
    array = sitk.GetArrayFromImage(labelImage)
    assert (array == 2).sum() == 2 * 3 * 3 and (array == 1).sum() == 2 * 3 * 3
    np.testing.assert_allclose(ijkToRasFromImage(labelImage), ijkToRasFromNode(reference), atol=1e-12)


def test_regression_output_is_a_scalar_volume_on_the_input_grid_with_a_robust_window(scene):
    image = make_image(direction=PERMUTED, spacing=(2.0, 0.8, 1.1))
    reference = addVolume(scene, image)
    predicted = sitk.GetImageFromArray(np.linspace(-50, 50, 6 * 7 * 8).reshape(6, 7, 8).astype(np.float32))
    predicted.CopyInformation(image)
    node = SceneBridge.addScalarVolumeFromImage(predicted, reference, "restored")
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_array_equal(ijkToRasFromNode(node), ijkToRasFromNode(reference))  # bit for bit
    display = node.GetDisplayNode()
    assert not display.GetAutoWindowLevel()
    assert -50 < display.GetWindowLevelMin() < -45 and 45 < display.GetWindowLevelMax() < 50


def test_output_off_the_input_grid_is_refused(scene):
    reference = addVolume(scene, make_image())
    shifted = make_image(origin=(0.0, 0.0, 0.0))
    with pytest.raises(SceneBridge.SceneBridgeError, match=naming("input", "IJK-to-RAS")):
        SceneBridge.addScalarVolumeFromImage(shifted, reference, "out")
    smaller = make_image(shape_zyx=(6, 7, 7))
    with pytest.raises(SceneBridge.SceneBridgeError, match=naming("size", "(7, 7, 6)", "(8, 7, 6)")):
        SceneBridge.addScalarVolumeFromImage(smaller, reference, "out")


def test_outputs_sit_beside_the_input_and_under_its_transform(scene):
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = shNode.CreateSubjectItem(shNode.GetSceneItemID(), "Patient 1")
    study = shNode.CreateStudyItem(patient, "CT study")
    reference = addVolume(scene, make_image(), name="CT")
    shNode.CreateItem(study, reference)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    reference.SetAndObserveTransformNodeID(transform.GetID())
    output = SceneBridge.addScalarVolumeFromImage(make_image(), reference, "CT")
    assert output.GetName() != "CT"  # never takes the user's node name
    assert shNode.GetItemParent(shNode.GetItemByDataNode(output)) == study
    assert output.GetTransformNodeID() == transform.GetID()


def test_existing_output_node_is_reused_only_when_given(scene):
    image = make_image()
    reference = addVolume(scene, image)
    label = sitk.GetImageFromArray((sitk.GetArrayFromImage(image) > 100).astype(np.uint8))
    label.CopyInformation(image)
    labels = [{"value": 1, "name": "bright", "color": [255, 255, 0]}]
    mine = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my segmentation")
    mine.CreateDefaultDisplayNodes()
    mine.GetSegmentation().AddEmptySegment("old", "old")
    first = SceneBridge.addSegmentationFromLabelImage(label, reference, labels, "my segmentation")
    assert first is not mine and SceneBridge.segmentNames(mine) == ["old"]
    second = SceneBridge.addSegmentationFromLabelImage(label, reference, labels, "x", segmentationNode=mine)
    assert second is mine and SceneBridge.segmentNames(mine) == ["bright"]


def test_label_map_node_names_come_from_its_colour_table(scene):
    image = make_image()
    array = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    array[0:2, 0:2, 0:2] = 5
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(image)
    node = addVolume(scene, label, labelmap=True)
    colors = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "c")
    colors.SetTypeToUser()
    colors.SetNumberOfColors(6)
    colors.SetColor(5, "prostate", 1, 0, 0, 1)
    node.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
    back, names = SceneBridge.labelImageFromLabelmapNode(node)
    assert names == {"prostate": 5}
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)


def test_node_without_image_data_is_a_clear_error(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(SceneBridge.SceneBridgeError, match=naming("empty")):
        SceneBridge.imageFromVolumeNode(node)
