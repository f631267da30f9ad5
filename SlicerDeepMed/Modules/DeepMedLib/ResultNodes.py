"""Model outputs that are not on the input's grid: volumes on their own grid (a finer grid, a generated
volume), tables of case-level values, and sequences of volumes (browsable in the Sequences module).

Qt-free; real MRML (a running Slicer or PyPI ``slicer-core``). Each output sits beside the volume it came
from in the subject hierarchy when there is one (a generator has no input), and a node the user passed is
reused, never another.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import slicer.util
import vtk

from DeepMedLib import SceneBridge
from DeepMedLib.SceneBridge import placeBeside, setRobustWindowLevel, updateVolumeNodeFromImage


def _newNode(scene, className: str, name: str, node=None):
    return node if node is not None else scene.AddNewNodeByClass(className, scene.GenerateUniqueName(name))


def addVolumeOnOwnGrid(image: sitk.Image, scene, name: str, volumeNode=None, besideNode=None):
    """``image`` as a scalar volume with its own geometry (spacing, origin, direction kept exactly)."""
    volumeNode = _newNode(scene, "vtkMRMLScalarVolumeNode", name, volumeNode)
    if besideNode is not None:  # the image is in besideNode's local frame
        placeBeside(volumeNode, besideNode)
    updateVolumeNodeFromImage(volumeNode, image)
    if volumeNode.GetDisplayNode() is None:
        volumeNode.CreateDefaultDisplayNodes()
    setRobustWindowLevel(volumeNode)
    return volumeNode


def addTableFromRows(rows: list[dict], scene, name: str, tableNode=None, besideNode=None):
    """Case-level results (one dict per row, e.g. a class and its probabilities) as a table node; numbers
    become numeric columns, everything else text."""
    tableNode = _newNode(scene, "vtkMRMLTableNode", name, tableNode)
    tableNode.RemoveAllColumns()
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    numeric = {c: all(_isNumber(row.get(c, "")) for row in rows) for c in columns}
    for column in columns:
        array = vtk.vtkDoubleArray() if numeric[column] else vtk.vtkStringArray()
        array.SetName(column)
        tableNode.AddColumn(array)
    table = tableNode.GetTable()
    table.SetNumberOfRows(len(rows))
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            value = row.get(column, "")
            table.SetValue(r, c, vtk.vtkVariant(float(value) if numeric[column] else str(value)))
    tableNode.Modified()
    if besideNode is not None:
        placeBeside(tableNode, besideNode)
    return tableNode


def addSequenceFromImages(frames: list[sitk.Image], scene, name: str, sequenceNode=None, besideNode=None,
                          indexName: str = "frame"):
    """A series of volumes as a sequence node with a browser, so the Sequences toolbar plays it; returns the
    sequence node (its browser's proxy volume is what the slice views show)."""
    if not frames:
        raise ValueError(f"{name}: a sequence needs at least one image")
    sequenceNode = _newNode(scene, "vtkMRMLSequenceNode", name, sequenceNode)
    sequenceNode.RemoveAllDataNodes()
    sequenceNode.SetIndexName(indexName)
    sequenceNode.SetIndexUnit("")
    sequenceNode.SetIndexType(sequenceNode.NumericIndex)
    for index, frame in enumerate(frames):
        volume = slicer.vtkMRMLScalarVolumeNode()
        updateVolumeNodeFromImage(volume, frame)
        sequenceNode.SetDataNodeAtValue(volume, str(index))
    browser = sequenceBrowser(sequenceNode)  # a re-run into the same sequence keeps its one browser
    if browser is None:
        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(f"{name} browser"))
        browser.SetAndObserveMasterSequenceNodeID(sequenceNode.GetID())
    browser.SetSelectedItemNumber(0)
    sequencesLogic = _sequencesLogic()
    if sequencesLogic is not None:  # makes the proxy volume the views show (Slicer does it on the next event)
        sequencesLogic.UpdateProxyNodesFromSequences(browser)
    if besideNode is not None:  # after the proxy nodes exist: they are what is placed in the frame
        placeBeside(sequenceNode, besideNode)
    return sequenceNode


def sequenceBrowser(sequenceNode):
    """The browser node whose master sequence is ``sequenceNode`` (None if there is none)."""
    scene = sequenceNode.GetScene()
    for browser in slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode", scene):
        if browser.GetMasterSequenceNode() is sequenceNode:
            return browser
    return None


def browsers(sequenceNode) -> list:
    """The sequence browser nodes that play ``sequenceNode``."""
    scene = sequenceNode.GetScene()
    return [browser for browser in slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode", scene)
            if browser.IsSynchronizedSequenceNode(sequenceNode.GetID(), True)]


def proxyNodes(sequenceNode) -> list:
    """The nodes that show ``sequenceNode``'s current frame, one per browser that plays it."""
    proxies = (browser.GetProxyNode(sequenceNode) for browser in browsers(sequenceNode))
    return [proxy for proxy in proxies if proxy is not None]


def proxyVolume(sequenceNode):
    """The volume node that shows a sequence's current frame in its own browser (None before the Sequences
    logic made it)."""
    browser = sequenceBrowser(sequenceNode)
    return browser.GetProxyNode(sequenceNode) if browser is not None else None


def sequenceFrames(sequenceNode) -> list:
    """The volume nodes a sequence holds, in index order."""
    return [sequenceNode.GetNthDataNode(i) for i in range(sequenceNode.GetNumberOfDataNodes())]


def _isNumber(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(str(value))
        return str(value).strip() != ""
    except ValueError:
        return False


def _sequencesLogic():
    modules = getattr(slicer, "modules", None)
    sequences = getattr(modules, "sequences", None)
    return sequences.logic() if sequences is not None else None


def addOverlappingMasks(masks: sitk.Image, referenceVolume, labels: list[dict], name: str, segmentationNode=None,
                        showIn3D: bool = False):
    """Binary masks that may overlap (a vector image on the reference's grid, one component per label: e.g.
    tumour core, whole tumour, enhancing tumour) as one segmentation node, a segment per mask; overlaps are
    kept (each segment imported on its own, so Slicer gives overlapping segments their own layers)."""
    SceneBridge.checkSameGrid(masks, referenceVolume)
    labels = sorted((label for label in labels if int(label["value"]) != 0), key=lambda item: int(item["value"]))
    count = masks.GetNumberOfComponentsPerPixel()
    if len(labels) != count:
        raise SceneBridge.SceneBridgeError(f"{name}: {count} mask(s) but {len(labels)} label(s) in the model card")
    # in the reference's frame, as the temporary label maps below are (CreateAndAddLabelVolume copies the
    # reference's transform): nothing for ImportLabelmapToSegmentationNode to convert
    segmentationNode = SceneBridge.emptySegmentationNode(referenceVolume, name, segmentationNode)
    segmentation = segmentationNode.GetSegmentation()
    for index, label in enumerate(labels):
        mask = sitk.VectorIndexSelectionCast(masks, index)
        r, g, b = (c / 255.0 for c in label.get("color", (128, 128, 128)))
        segmentId = segmentation.AddEmptySegment(label["name"], label["name"], [r, g, b])
        array = (sitk.GetArrayFromImage(mask) > 0).astype(np.uint8)
        # (no SetLabelValue here: in a shared layer it says which voxel value is the segment's)
        slicer.util.updateSegmentBinaryLabelmapFromArray(array, segmentationNode, segmentId, referenceVolume)
    if showIn3D:
        segmentationNode.CreateClosedSurfaceRepresentation()
    return segmentationNode
