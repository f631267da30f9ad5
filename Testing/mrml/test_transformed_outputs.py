"""Every output kind lands where the input is in world RAS, whatever transform the input is under (translated,
rotated, nested) and whether the output node is new or reused (previously under another transform or the same).

The worker computes in the input's local frame (the volume's IJK-to-RAS, no parent transform), so a result
voxel (i, j, k) belongs at ``inputToWorld @ IJKToRAS_input @ (i, j, k)``. Positions are read back from the
output node itself (its voxels or its segments' internal labelmaps, through its own parent transforms), never
through the logic under test.
"""

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from conftest import OBLIQUE, make_image

from DeepMedLib import Outputs, ResultNodes, SceneBridge
from DeepMedLib.Geometry import ijkToRasFromImage, ijkToRasFromNode

SHAPE = (6, 7, 8)  # (K, J, I)
BOX = np.s_[1:4, 2:5, 3:6]  # 27 voxels
LABELS = [{"value": 1, "name": "box", "color": [255, 0, 0]}, {"value": 2, "name": "corner", "color": [0, 255, 0]}]


# ---- world positions, computed from the nodes themselves ---------------------------------------------------
def toWorld(node, points: np.ndarray) -> np.ndarray:
    """Points (N x 3) in ``node``'s local RAS -> world RAS through all its parent transforms."""
    parent = node.GetParentTransformNode()
    if parent is None:
        return points
    transform = vtk.vtkGeneralTransform()
    parent.GetTransformToWorld(transform)
    return np.array([transform.TransformPoint(*point) for point in points])


def ijkToWorld(node, ijkToRas: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    local = (ijkToRas @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]
    return toWorld(node, local)


def volumeWorldPoints(node, mask=None) -> np.ndarray:
    """World RAS of a volume node's non-zero voxels (or of ``mask``'s voxels, mask indexed K, J, I)."""
    array = slicer.util.arrayFromVolume(node)
    kji = np.argwhere(array != 0 if mask is None else mask)
    return ijkToWorld(node, ijkToRasFromNode(node), kji[:, ::-1].astype(float))


def segmentWorldPoints(segmentationNode, name: str) -> np.ndarray:
    """World RAS of a segment's voxels, from its internal binary labelmap (shared layers: its label value)."""
    segmentation = segmentationNode.GetSegmentation()
    segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
    labelmap = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    imageToLocal = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    extent = labelmap.GetExtent()
    if extent[0] > extent[1]:
        return np.zeros((0, 3))
    array = vtk.util.numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(
        extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    kji = np.argwhere(array == segment.GetLabelValue())
    ijk = kji[:, ::-1] + [extent[0], extent[2], extent[4]]
    return ijkToWorld(segmentationNode, imageToLocal, ijk.astype(float))


def assertSamePoints(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert len(got) == len(expected), f"{what}: {len(got)} voxels instead of {len(expected)}"
    distances = np.linalg.norm(got[:, None, :] - expected[None, :, :], axis=-1)
    misplaced = int((distances.min(axis=0) > 1e-3).sum())
    assert misplaced == 0, (f"{what}: {misplaced} of {len(expected)} voxels not where they belong "
                            f"(off by up to {distances.min(axis=0).max():.1f} mm)")


# ---- parent transforms ------------------------------------------------------------------------------------------
def linear(scene, name: str, rotationDegrees=(0.0, 0.0, 0.0), translation=(0.0, 0.0, 0.0)):
    transform = vtk.vtkTransform()
    transform.Translate(*translation)
    transform.RotateX(rotationDegrees[0])
    transform.RotateY(rotationDegrees[1])
    transform.RotateZ(rotationDegrees[2])
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformToParent(transform.GetMatrix())
    return node


def translated(scene):
    return linear(scene, "translated", translation=(50.0, 0.0, 0.0))


def rotated(scene):
    return linear(scene, "rotated", rotationDegrees=(20.0, -35.0, 60.0), translation=(-7.0, 12.5, 30.0))


def nested(scene):
    outer = linear(scene, "outer", rotationDegrees=(0.0, 0.0, 90.0), translation=(0.0, 40.0, 0.0))
    inner = linear(scene, "inner", rotationDegrees=(15.0, 0.0, 0.0), translation=(-20.0, 0.0, 5.0))
    inner.SetAndObserveTransformNodeID(outer.GetID())
    return inner


def warped(scene):
    """A non-linear (thin-plate spline) transform under a linear one."""
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for corner in np.array(np.meshgrid([-40, 40], [0, 80], [-20, 40])).reshape(3, -1).T:
        source.InsertNextPoint(*corner.astype(float))
        target.InsertNextPoint(*(corner + 3.0 * np.sin(corner / 17.0)))
    spline = vtk.vtkThinPlateSplineTransform()
    spline.SetSourceLandmarks(source)
    spline.SetTargetLandmarks(target)
    spline.SetBasisToR()
    node = scene.AddNewNodeByClass("vtkMRMLTransformNode", "warp")
    node.SetAndObserveTransformToParent(spline)
    node.SetAndObserveTransformNodeID(translated(scene).GetID())
    return node


TRANSFORMS = {"translated": translated, "rotated": rotated, "nested": nested, "warped": warped}


# ---- the scene before the run: an input under a transform, maybe an output node from a previous run -------------
def inputVolume(scene, parent):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "input")
    SceneBridge.updateVolumeNodeFromImage(node, make_image(shape_zyx=SHAPE, direction=OBLIQUE, spacing=(0.7, 1.3, 3.1)))
    node.CreateDefaultDisplayNodes()
    node.SetAndObserveTransformNodeID(parent.GetID())
    return node


def previousOutput(scene, kind: str, reused: str, inputNode):
    """None for a new output node; else a node of ``kind``'s class left by an earlier run, under another
    transform (``reused-elsewhere``) or under the input's (``reused-same``), holding data in that frame."""
    if reused == "new":
        return None
    node = scene.AddNewNodeByClass(Outputs.nodeClass(kind), "previous result")
    if reused == "reused-elsewhere":
        other = linear(scene, "previous registration", rotationDegrees=(0, 45, 0), translation=(0.0, -25.0, 10.0))
        if node.IsA("vtkMRMLTransformableNode"):
            node.SetAndObserveTransformNodeID(other.GetID())
    elif node.IsA("vtkMRMLTransformableNode"):
        node.SetAndObserveTransformNodeID(inputNode.GetTransformNodeID())
    old = sitk.GetImageFromArray(np.ones(SHAPE, np.uint8))
    old.CopyInformation(SceneBridge.imageFromVolumeNode(inputNode))
    if kind in ("label_map", "overlapping_masks"):
        node.CreateDefaultDisplayNodes()
        segmentId = node.GetSegmentation().AddEmptySegment("old", "old")
        slicer.util.updateSegmentBinaryLabelmapFromArray(np.ones(SHAPE, np.uint8), node, segmentId, inputNode)
    elif kind == "sequence":
        ResultNodes.addSequenceFromImages([old], scene, "previous result", sequenceNode=node)
        for proxy in ResultNodes.proxyNodes(node):
            proxy.SetAndObserveTransformNodeID(other.GetID() if reused == "reused-elsewhere"
                                               else inputNode.GetTransformNodeID())
    else:
        SceneBridge.updateVolumeNodeFromImage(node, old)
    return node


def resultOnInputGrid(inputNode, values) -> sitk.Image:
    array = np.zeros(SHAPE, np.uint8)
    array[BOX] = values[0]
    array[4, 5, 6] = values[1]
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(SceneBridge.imageFromVolumeNode(inputNode))
    return image


def expectedWorld(inputNode, mask: np.ndarray) -> np.ndarray:
    return volumeWorldPoints(inputNode, mask)


KINDS = ["label_map", "overlapping_masks", "scalar_volume", "image", "sequence"]
REUSE = ["new", "reused-elsewhere", "reused-same"]


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("reused", REUSE)
@pytest.mark.parametrize("kind", KINDS)
def test_every_output_lands_where_the_input_is(scene, kind, reused, transform):
    inputNode = inputVolume(scene, TRANSFORMS[transform](scene))
    node = previousOutput(scene, kind, reused, inputNode)
    box = np.zeros(SHAPE, bool)
    box[BOX] = True
    corner = np.zeros(SHAPE, bool)
    corner[4, 5, 6] = True
    if kind == "label_map":
        result = resultOnInputGrid(inputNode, (1, 2))
    elif kind == "overlapping_masks":  # "box" and "box + corner": they overlap
        first = sitk.GetArrayFromImage(resultOnInputGrid(inputNode, (1, 0)))
        second = sitk.GetArrayFromImage(resultOnInputGrid(inputNode, (1, 1)))
        result = sitk.GetImageFromArray(np.stack([first, second], axis=-1), isVector=True)
        result.CopyInformation(SceneBridge.imageFromVolumeNode(inputNode))
        corner = box | corner
    elif kind == "image":  # a finer grid of its own, in the input's local frame (a super-resolution)
        coarse = SceneBridge.imageFromVolumeNode(inputNode)
        result = sitk.Image([2 * s for s in coarse.GetSize()], sitk.sitkFloat32)
        result.SetSpacing([s / 2 for s in coarse.GetSpacing()])
        result.SetDirection(coarse.GetDirection())
        result.SetOrigin(coarse.TransformContinuousIndexToPhysicalPoint([-0.25, -0.25, -0.25]))
        result[6, 7, 8] = 5.0  # the fine voxel at input voxel (3, 3.5, 4) - (0.25, ...) = (2.75, 3.25, 3.75)
    elif kind == "sequence":
        result = [resultOnInputGrid(inputNode, (1, 2)), resultOnInputGrid(inputNode, (2, 1))]
    else:
        result = sitk.Cast(resultOnInputGrid(inputNode, (1, 2)), sitk.sitkFloat32)

    output = Outputs.addOutput(kind, result, inputNode, LABELS, "result", node=node)

    if node is not None:
        assert output is node
    if kind in ("label_map", "overlapping_masks"):
        assertSamePoints(segmentWorldPoints(output, "box"), expectedWorld(inputNode, box), "box")
        assertSamePoints(segmentWorldPoints(output, "corner"), expectedWorld(inputNode, corner), "corner")
    elif kind == "image":
        fineToCoarse = np.linalg.inv(ijkToRasFromNode(inputNode)) @ ijkToRasFromImage(result)
        expectedLocal = (ijkToRasFromNode(inputNode) @ fineToCoarse @ [6, 7, 8, 1])[:3]
        assertSamePoints(volumeWorldPoints(output), toWorld(inputNode, expectedLocal[None]), "fine voxel")
    elif kind == "sequence":
        proxies = ResultNodes.proxyNodes(output)
        assert proxies, "a sequence result has a proxy volume to show"
        for frame, (boxValue, cornerValue) in enumerate([(1, 2), (2, 1)]):
            for browser in ResultNodes.browsers(output):
                browser.SetSelectedItemNumber(frame)
                slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
            for proxy in proxies:
                array = slicer.util.arrayFromVolume(proxy)
                assertSamePoints(volumeWorldPoints(proxy, array == boxValue), expectedWorld(inputNode, box),
                                 f"frame {frame} box")
                assertSamePoints(volumeWorldPoints(proxy, array == cornerValue), expectedWorld(inputNode, corner),
                                 f"frame {frame} corner")
    else:
        array = slicer.util.arrayFromVolume(output)
        assertSamePoints(volumeWorldPoints(output, array == 1), expectedWorld(inputNode, box), "box")
        assertSamePoints(volumeWorldPoints(output, array == 2), expectedWorld(inputNode, corner), "corner")


def segmentAtWorldPositionsOf(scene, referenceNode, mask: np.ndarray, segmentationParent):
    """A segmentation under ``segmentationParent`` whose segment covers ``referenceNode``'s ``mask`` voxels in
    world (made exactly: a label map in the segmentation's own frame, so nothing is converted on import)."""
    from DeepMedLib.Frames import frameChange
    from DeepMedLib.Geometry import setNodeIjkToRas

    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn")
    segmentation.CreateDefaultDisplayNodes()
    if segmentationParent is not None:
        segmentation.SetAndObserveTransformNodeID(segmentationParent.GetID())
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "drawn label")
    slicer.util.updateVolumeFromArray(labelmap, mask.astype(np.uint8))
    labelmap.SetAndObserveTransformNodeID(segmentation.GetTransformNodeID())
    change = frameChange(referenceNode, segmentation).matrix
    setNodeIjkToRas(labelmap, change @ ijkToRasFromNode(referenceNode))
    assert slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation)
    scene.RemoveNode(labelmap)
    segmentation.GetSegmentation().GetNthSegment(0).SetName("drawn")
    return segmentation


@pytest.mark.parametrize("segmentationFrame", ["world", "other"])
@pytest.mark.parametrize("transform", ["translated", "rotated", "nested"])
def test_a_segmentation_in_another_frame_exports_onto_the_reference_voxels_it_covers(scene, transform,
                                                                                      segmentationFrame):
    """Training labels: a segmentation drawn under another transform than its volume (or none) gives the
    volume's voxels it covers in world."""
    inputNode = inputVolume(scene, TRANSFORMS[transform](scene))
    parent = None if segmentationFrame == "world" else linear(scene, "other", (10.0, 0.0, -30.0), (5.0, 5.0, 0.0))
    mask = np.zeros(SHAPE, bool)
    mask[BOX] = True
    segmentation = segmentAtWorldPositionsOf(scene, inputNode, mask, parent)
    assertSamePoints(segmentWorldPoints(segmentation, "drawn"), expectedWorld(inputNode, mask), "drawn")
    nodesBefore = scene.GetNumberOfNodes()
    labelImage, names = SceneBridge.labelImageFromSegmentation(segmentation, inputNode)
    assert names == {"drawn": 1} and scene.GetNumberOfNodes() == nodesBefore  # temporaries removed
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labelImage) == 1, mask)
