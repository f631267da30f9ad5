"""MRML scene <-> SimpleITK images: volumes, label maps, segmentations and regression outputs.

Qt-free; works on the real MRML of a running Slicer and on PyPI ``slicer-core``. Outputs always get the
input volume's IJK-to-RAS matrix exactly, are named uniquely, sit beside the input in the subject
hierarchy, and never replace a user's node unless it was passed as the output.

Where results go when the input is under a parent transform (a registered scan), one rule, in
:func:`placeInFrameOf`: the worker computes in the input's *local* frame (its IJK-to-RAS, no transform), so
every output node, and every temporary node its data passes through, is put under the input's parent
transform *before* its data is written; the data is then written in that local frame as it is. Slicer's
segmentation logic converts between two nodes' frames when their transforms differ
(``ImportLabelmapToSegmentationNode``; called with segment IDs, as ``slicer.util.
updateSegmentBinaryLabelmapFromArray`` does, it applies the transform twice); with both in the input's frame
there is nothing to convert.
"""

from __future__ import annotations

import contextlib

import numpy as np
import SimpleITK as sitk
import slicer
import slicer.util

from DeepMedLib.Frames import frameChange
from DeepMedLib.Geometry import (
    copyNodeGeometry,
    gridDifference,
    ijkToRasFromImage,
    ijkToRasFromNode,
    setImageGeometryFromIjkToRas,
    setNodeIjkToRas,
)


class SceneBridgeError(ValueError):
    """A node that cannot be converted; the message names the node and the problem."""


# ---- volumes ---------------------------------------------------------------------------------------
def imageFromVolumeNode(volumeNode) -> sitk.Image:
    """A scalar volume or label map node as a SimpleITK image with the same voxels and geometry (LPS)."""
    if volumeNode is None or volumeNode.GetImageData() is None:
        name = volumeNode.GetName() if volumeNode is not None else "None"
        raise SceneBridgeError(f"{name}: volume has no image data")
    array = slicer.util.arrayFromVolume(volumeNode)
    if array.ndim != 3:
        raise SceneBridgeError(f"{volumeNode.GetName()}: expected a scalar 3D volume, got an array of shape "
                               f"{array.shape}")
    image = sitk.GetImageFromArray(np.array(array, copy=True))
    setImageGeometryFromIjkToRas(image, ijkToRasFromNode(volumeNode))
    return image


def updateVolumeNodeFromImage(volumeNode, image: sitk.Image) -> None:
    """Replace a volume node's voxels and geometry by those of a SimpleITK image."""
    slicer.util.updateVolumeFromArray(volumeNode, sitk.GetArrayFromImage(image))
    setNodeIjkToRas(volumeNode, ijkToRasFromImage(image))


def checkSameGrid(image: sitk.Image, referenceVolume, what: str = "output") -> None:
    """Raise unless ``image`` lies voxel for voxel on ``referenceVolume``'s grid."""
    referenceShape = slicer.util.arrayFromVolume(referenceVolume).shape
    shape = tuple(reversed(image.GetSize()))  # (K, J, I), also for vector images (one component per mask)
    problem = gridDifference(referenceShape, ijkToRasFromNode(referenceVolume), shape, ijkToRasFromImage(image))
    if problem:
        raise SceneBridgeError(f"{what} is not on the grid of {referenceVolume.GetName()}: {problem}")


def addScalarVolumeFromImage(image: sitk.Image, referenceVolume, name: str, volumeNode=None):
    """Show a regression output as a scalar volume on the reference's exact grid, with a useful window."""
    checkSameGrid(image, referenceVolume)
    scene = referenceVolume.GetScene()
    if volumeNode is None:
        volumeNode = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    placeBeside(volumeNode, referenceVolume)
    slicer.util.updateVolumeFromArray(volumeNode, sitk.GetArrayFromImage(image))
    copyNodeGeometry(referenceVolume, volumeNode)
    if volumeNode.GetDisplayNode() is None:
        volumeNode.CreateDefaultDisplayNodes()
    setRobustWindowLevel(volumeNode)
    return volumeNode


def setRobustWindowLevel(volumeNode, lowPercentile: float = 1.0, highPercentile: float = 99.0) -> None:
    """Window from the 1st to the 99th percentile (a few outliers do not wash the image out)."""
    display = volumeNode.GetDisplayNode()
    values = slicer.util.arrayFromVolume(volumeNode)
    low, high = (float(v) for v in np.percentile(values, [lowPercentile, highPercentile]))
    if high <= low:
        high = low + 1.0
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(low, high)


# ---- segmentations ---------------------------------------------------------------------------------
def _colorTableForLabels(scene, labels: list[dict]):
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", scene.GenerateUniqueName("DeepMedLabels"))
    table.SetTypeToUser()
    maxValue = max([int(label["value"]) for label in labels] + [0])
    table.SetNumberOfColors(maxValue + 1)
    table.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    for label in labels:
        r, g, b = (c / 255.0 for c in label.get("color", (128, 128, 128)))
        table.SetColor(int(label["value"]), label["name"], r, g, b, 1.0)
    return table


def addSegmentationFromLabelImage(labelImage: sitk.Image, referenceVolume, labels: list[dict], name: str,
                                  segmentationNode=None, showIn3D: bool = False):
    """A label image (on the reference's grid) as a segmentation node with the model's names and colours.

    ``labels``: ``[{"value": 1, "name": "liver", "color": [r, g, b]}]`` (0-255; background is skipped).
    Every label gets a segment, an empty one when the label was not found, so the list always shows what
    the model can find. An existing ``segmentationNode`` (chosen by the user as output) is emptied first.
    """
    checkSameGrid(labelImage, referenceVolume)
    labels = [label for label in labels if int(label["value"]) != 0]
    scene = referenceVolume.GetScene()
    labelmapNode = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName("DeepMedLabelmap"))
    colorTable = _colorTableForLabels(scene, labels)
    try:
        placeInFrameOf(labelmapNode, referenceVolume)
        slicer.util.updateVolumeFromArray(labelmapNode, sitk.GetArrayFromImage(labelImage).astype(np.int32))
        copyNodeGeometry(referenceVolume, labelmapNode)
        labelmapNode.CreateDefaultDisplayNodes()
        labelmapNode.GetDisplayNode().SetAndObserveColorNodeID(colorTable.GetID())
        segmentationNode = emptySegmentationNode(referenceVolume, name, segmentationNode)
        segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic
        if not segmentationsLogic.ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode):
            raise SceneBridgeError(f"{segmentationNode.GetName()}: importing the label map failed")
        _nameAndColourSegments(segmentationNode, labels)
    finally:
        scene.RemoveNode(labelmapNode)
        scene.RemoveNode(colorTable)
    if showIn3D:
        segmentationNode.CreateClosedSurfaceRepresentation()
    return segmentationNode


def emptySegmentationNode(referenceVolume, name: str, segmentationNode=None):
    """A new segmentation node (or the user's chosen one, emptied) on the reference's geometry, displayed,
    beside the reference and in its frame."""
    scene = referenceVolume.GetScene()
    if segmentationNode is None:
        segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    else:
        segmentationNode.GetSegmentation().RemoveAllSegments()
    placeBeside(segmentationNode, referenceVolume)
    if segmentationNode.GetDisplayNode() is None:
        segmentationNode.CreateDefaultDisplayNodes()
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
    return segmentationNode


def _nameAndColourSegments(segmentationNode, labels: list[dict]) -> None:
    """Name, colour and order segments by label value; add empty segments for labels not found."""
    segmentation = segmentationNode.GetSegmentation()
    byName = {segmentation.GetNthSegment(i).GetName(): segmentation.GetNthSegmentID(i)
              for i in range(segmentation.GetNumberOfSegments())}
    for index, label in enumerate(sorted(labels, key=lambda item: int(item["value"]))):
        r, g, b = (c / 255.0 for c in label.get("color", (128, 128, 128)))
        segmentId = byName.get(label["name"])
        if segmentId is None:
            segmentId = segmentation.AddEmptySegment(label["name"], label["name"], [r, g, b])
        segment = segmentation.GetSegment(segmentId)
        segment.SetColor(r, g, b)
        segment.SetLabelValue(int(label["value"]))
        if "snomed" in label:
            segment.SetTag("DeepMed.SNOMED", str(label["snomed"]))
        segment.SetTag(segment.GetTerminologyEntryTagName(), terminologyEntry(label))  # Slicer 4.10+
        segmentation.SetSegmentIndex(segmentId, index)


def terminologyEntry(label: dict) -> str:
    """Slicer's terminology tag for a card label (its coded category and type, as a DICOM SEG written by the
    engine has them): Slicer's own DICOM export of the segmentation then carries the same codes."""
    from deepmed.model.terminology import Terminology, label_terminology

    given = label.get("terminology")
    codes = label_terminology(label["name"], label.get("snomed"), given and Terminology.from_dict(given))
    triple = "~".join(f"{c.scheme}^{c.value}^{c.meaning}" for c in (codes.category, codes.type))
    return f"Segmentation category and type - DICOM master list~{triple}~^^~Anatomic codes - DICOM master list~^^~^^"


def labelImageFromSegmentation(segmentationNode, referenceVolume, nameToValue: dict | None = None):
    """A segmentation node as a label image on the reference's grid: ``(image, nameToValue)``.

    Segments are matched to label values by name through ``nameToValue`` (new names get the next free
    value and are added to it), so several cases of a dataset share one label numbering.
    """
    nameToValue = dict(nameToValue or {})
    segmentation = segmentationNode.GetSegmentation()
    shape = slicer.util.arrayFromVolume(referenceVolume).shape
    labelArray = np.zeros(shape, dtype=np.uint16)
    with _referenceInFrameOf(referenceVolume, segmentationNode) as reference:
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            segmentName = segmentation.GetNthSegment(index).GetName()
            if segmentName not in nameToValue:
                nameToValue[segmentName] = max(list(nameToValue.values()) + [0]) + 1
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, reference)
            labelArray[np.asarray(mask) > 0] = nameToValue[segmentName]
    image = sitk.GetImageFromArray(labelArray)
    setImageGeometryFromIjkToRas(image, ijkToRasFromNode(referenceVolume))
    return image, nameToValue


@contextlib.contextmanager
def _referenceInFrameOf(referenceVolume, node):
    """``referenceVolume``'s voxels as a volume in ``node``'s frame: itself when they share a parent transform;
    when a linear transform links the two frames, a temporary volume with the same voxels and the IJK-to-RAS
    that puts them at the same place in ``node``'s frame (exact, no resampling: Slicer's own conversion
    between frames in ``ExportSegmentsToLabelmapNode`` misses the voxels when both nodes are under different
    transforms, or the reference under nested ones); else itself (non-linear: Slicer resamples)."""
    change = frameChange(referenceVolume, node)
    if referenceVolume.GetTransformNodeID() == node.GetTransformNodeID() or change.matrix is None:
        yield referenceVolume
        return
    scene = referenceVolume.GetScene()
    temporary = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName("DeepMedReference"))
    try:
        temporary.SetAndObserveImageData(referenceVolume.GetImageData())
        setNodeIjkToRas(temporary, change.matrix @ ijkToRasFromNode(referenceVolume))
        temporary.SetAndObserveTransformNodeID(node.GetTransformNodeID())
        yield temporary
    finally:
        scene.RemoveNode(temporary)


def labelImageFromLabelmapNode(labelmapNode):
    """A label map node as ``(image, nameToValue)``; names from its colour table when it has one."""
    image = imageFromVolumeNode(labelmapNode)
    values = sorted(int(v) for v in np.unique(sitk.GetArrayViewFromImage(image)) if v != 0)
    display = labelmapNode.GetDisplayNode()
    colors = display.GetColorNode() if display is not None else None
    names = {}
    for value in values:
        name = colors.GetColorName(value) if colors is not None and value < colors.GetNumberOfColors() else ""
        names[name if name and name != "(none)" else f"label_{value}"] = value
    return image, names


# ---- the scene's organisation ------------------------------------------------------------------------
def placeInFrameOf(node, referenceNode) -> None:
    """Put ``node`` under ``referenceNode``'s parent transform (none when it has none), so that data written
    in the reference's local frame lands where the reference is, whatever transform it is under (linear or
    not, nested or not). Call it before writing the data. A sequence is not placed in space: the nodes that
    show it (its browsers' proxy nodes) are."""
    if node.IsA("vtkMRMLSequenceNode"):
        from DeepMedLib.ResultNodes import proxyNodes  # ResultNodes imports this module

        for proxy in proxyNodes(node):
            placeInFrameOf(proxy, referenceNode)
    elif node.IsA("vtkMRMLTransformableNode"):
        node.SetAndObserveTransformNodeID(referenceNode.GetTransformNodeID())


def placeBeside(node, referenceNode) -> None:
    """Put ``node`` in the same subject-hierarchy folder as ``referenceNode`` and in its frame
    (:func:`placeInFrameOf`); call it before writing the node's data."""
    scene = referenceNode.GetScene()
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if shNode is not None:
        invalid = slicer.vtkMRMLSubjectHierarchyNode.GetInvalidItemID()
        referenceItem = shNode.GetItemByDataNode(referenceNode)
        if referenceItem == invalid:
            referenceItem = shNode.CreateItem(shNode.GetSceneItemID(), referenceNode)
        parent = shNode.GetItemParent(referenceItem)
        item = shNode.GetItemByDataNode(node)
        if item == invalid:
            shNode.CreateItem(parent, node)
        else:
            shNode.SetItemParent(item, parent)
    placeInFrameOf(node, referenceNode)


def segmentNames(segmentationNode) -> list[str]:
    segmentation = segmentationNode.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
