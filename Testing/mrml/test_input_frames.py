"""Multi-channel inputs under different parent transforms reach the worker in the first channel's frame.

Each channel holds samples of one function of *world* position, ``worldValue``; a channel brought into the
first one's frame must show, at each voxel of the first channel's grid, the value of the world point that
voxel sits at. ``worldValue`` is linear, so linear interpolation reproduces it exactly where the transform
between the frames is linear.
"""

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from conftest import OBLIQUE, make_image
from mrml.test_transformed_outputs import linear, rotated, segmentWorldPoints, translated, warped

from DeepMedLib import InputFrames, SceneBridge
from DeepMedLib.Geometry import ijkToRasFromImage, ijkToRasFromNode
from DeepMedLib.InputFrames import inputImages

SHAPE = (6, 7, 8)


def worldValue(ras: np.ndarray) -> np.ndarray:
    return 2.0 * ras[..., 0] - 3.0 * ras[..., 1] + 5.0 * ras[..., 2] + 100.0


def transformPoints(transformNode, points: np.ndarray, toWorld: bool = True) -> np.ndarray:
    if transformNode is None:
        return points
    transform = vtk.vtkGeneralTransform()
    (transformNode.GetTransformToWorld if toWorld else transformNode.GetTransformFromWorld)(transform)
    return np.array([transform.TransformPoint(*p) for p in points])


def voxelCentres(ijkToRas: np.ndarray, shapeKji) -> np.ndarray:
    """Local RAS of every voxel centre, in the (K, J, I) order of the arrays."""
    kji = np.argwhere(np.ones(shapeKji, bool))
    return (ijkToRas @ np.c_[kji[:, ::-1], np.ones(len(kji))].T).T[:, :3]


def channel(scene, name: str, geometry: sitk.Image, transformNode):
    """A volume on ``geometry``'s grid, under ``transformNode``, sampling ``worldValue`` where its voxels are."""
    shape = sitk.GetArrayViewFromImage(geometry).shape
    world = transformPoints(transformNode, voxelCentres(ijkToRasFromImage(geometry), shape))
    image = sitk.GetImageFromArray(worldValue(world).reshape(shape).astype(np.float32))
    image.CopyInformation(geometry)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    SceneBridge.updateVolumeNodeFromImage(node, image)
    if transformNode is not None:
        node.SetAndObserveTransformNodeID(transformNode.GetID())
    return node


def coveringGrid(firstNode, transformNode, spacing=1.0) -> sitk.Image:
    """An axis-aligned grid in ``transformNode``'s frame covering the first channel (with a margin)."""
    world = transformPoints(firstNode.GetParentTransformNode(), voxelCentres(ijkToRasFromNode(firstNode), SHAPE))
    local = transformPoints(transformNode, world, toWorld=False)
    low, high = local.min(axis=0) - 3 * spacing, local.max(axis=0) + 3 * spacing
    size = np.ceil((high - low) / spacing).astype(int) + 1
    grid = sitk.Image([int(n) for n in size], sitk.sitkFloat32)
    grid.SetSpacing([spacing] * 3)
    grid.SetOrigin((low * [-1, -1, 1]).tolist())  # RAS -> LPS; LPS-aligned axes run towards -R, -A
    grid.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # so that the grid's axes run along +R, +A, +S from low
    return grid


def firstChannel(scene, transformNode):
    return channel(scene, "T1", make_image(shape_zyx=SHAPE, direction=OBLIQUE, spacing=(0.7, 1.3, 3.1)),
                   transformNode)


def expectedOnFirstGrid(firstNode) -> np.ndarray:
    world = transformPoints(firstNode.GetParentTransformNode(), voxelCentres(ijkToRasFromNode(firstNode), SHAPE))
    return worldValue(world).reshape(SHAPE)


FRAMES = {  # (first channel's transform, second channel's transform, tolerance)
    "none-and-rotated": (lambda scene: None, rotated, 1e-2),
    "translated-and-rotated": (translated, rotated, 1e-2),
    "rotated-and-none": (rotated, lambda scene: None, 1e-2),
    "rotated-and-warped": (rotated, warped, 0.1),
    "rotated-and-warped, coarse field": (rotated, warped, 0.5),
}


@pytest.fixture
def coarseField(request, monkeypatch):
    """A displacement field on every 3rd voxel (what a large volume gets) for the "coarse field" case."""
    if "coarse" in request.node.callspec.params["frames"]:
        monkeypatch.setattr(InputFrames, "MAX_FIELD_POINTS", 30)


@pytest.mark.parametrize("frames", FRAMES)
def test_a_channel_under_another_transform_is_resampled_onto_the_first_channels_grid(scene, frames, coarseField):
    firstTransform, secondTransform, tolerance = FRAMES[frames]
    first = firstChannel(scene, firstTransform(scene))
    secondParent = secondTransform(scene)
    second = channel(scene, "FLAIR", coveringGrid(first, secondParent), secondParent)
    images = inputImages([first, second])
    assert len(images) == 2
    for image in images:  # on the first channel's grid, in its local frame
        np.testing.assert_allclose(ijkToRasFromImage(image), ijkToRasFromNode(first), atol=1e-9)
        assert image.GetSize() == SceneBridge.imageFromVolumeNode(first).GetSize()
    expected = expectedOnFirstGrid(first)
    np.testing.assert_allclose(sitk.GetArrayFromImage(images[0]), expected, atol=1e-2)
    np.testing.assert_allclose(sitk.GetArrayFromImage(images[1]), expected, atol=tolerance)


def test_the_same_grid_under_another_transform_is_not_passed_as_it_is(scene):
    """The silent case: a registered channel on the same local grid would pass the worker's grid check."""
    axial = make_image(shape_zyx=SHAPE, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), spacing=(0.7, 1.3, 3.1))
    first = channel(scene, "T1", axial, None)
    # 1.95 mm anterior = 1.5 voxels along -J (LPS J runs posterior): first-grid rows J = 5, 6 fall outside
    second = channel(scene, "FLAIR", axial, linear(scene, "registration", translation=(0.0, 1.95, 0.0)))
    naive = sitk.GetArrayFromImage(SceneBridge.imageFromVolumeNode(second))
    assert np.abs(naive - expectedOnFirstGrid(first)).max() > 5  # what the worker would have read
    resampled = sitk.GetArrayFromImage(inputImages([first, second])[1])
    inside = np.s_[:, :5, :]
    np.testing.assert_allclose(resampled[inside], expectedOnFirstGrid(first)[inside], atol=1e-2)
    np.testing.assert_allclose(resampled[:, 5:, :], naive.min(), atol=1e-3)  # outside: its minimum, not 0


def test_channels_in_the_same_frame_go_as_they_are(scene):
    transformNode = rotated(scene)
    first = firstChannel(scene, transformNode)
    finer = make_image(shape_zyx=(12, 14, 16), direction=OBLIQUE, spacing=(0.35, 0.65, 1.55))
    second = channel(scene, "same transform, own grid", finer, transformNode)
    identity = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "identity")
    third = channel(scene, "identity transform", SceneBridge.imageFromVolumeNode(first), identity)
    third.SetAndObserveTransformNodeID(identity.GetID())
    identity.SetAndObserveTransformNodeID(transformNode.GetID())
    images = inputImages([first, second, third])
    for node, image in zip([first, second, third], images, strict=True):
        direct = SceneBridge.imageFromVolumeNode(node)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(direct))
        np.testing.assert_array_equal(ijkToRasFromImage(image), ijkToRasFromImage(direct))
    assert inputImages([]) == []


def test_slicer_core_converts_between_frames_as_the_placement_rule_assumes(scene):
    """What the rule relies on, from the real logics (Modules/Loadable/Volumes/Logic/vtkSlicerVolumesLogic.cxx
    CreateLabelVolumeFromVolume; Modules/Loadable/Segmentations/Logic/vtkSlicerSegmentationsModuleLogic.cxx
    ImportLabelmapToSegmentationNode): a label volume made from a volume is under its transform, and a label
    map imported into a segmentation under another transform is converted into the segmentation's frame."""
    transformNode = translated(scene)
    volume = firstChannel(scene, transformNode)
    labelmap = slicer.modules.volumes.logic().CreateAndAddLabelVolume(volume, "label")
    assert labelmap.GetTransformNodeID() == transformNode.GetID()
    array = np.zeros(SHAPE, np.uint8)
    array[2, 3, 4] = 1
    slicer.util.updateVolumeFromArray(labelmap, array)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "untransformed")
    assert slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation)
    name = segmentation.GetSegmentation().GetNthSegment(0).GetName()
    inSegmentation = segmentWorldPoints(segmentation, name)  # an untransformed node: its frame is the world
    inLabelmapFrame = ijkToRasFromNode(labelmap) @ [4, 3, 2, 1.0]
    np.testing.assert_allclose(inSegmentation - inLabelmapFrame[:3], [[50.0, 0.0, 0.0]], atol=1e-6)  # shifted by T
