"""Where each kind of model output goes in the scene. The modules never branch on an application's name:
the model card's ``output_kind`` (or its mode's) says what the output is.

kind            file the worker writes   node in the scene
label_map       output.nrrd              segmentation (input's grid, the card's names and colours)
overlapping_masks output.seg.nrrd        segmentation, a segment per mask, overlaps kept (input's grid)
scalar_volume   output.nrrd              scalar volume on the input's grid
image           output.nrrd              scalar volume on its own grid (a finer grid, a generated volume)
table           output.csv               table node (case-level values: a class and its probabilities, ...)
sequence        output.nrrd (4D)         sequence node of volumes with a browser (an interpolation, ...)
"""

from __future__ import annotations

import csv
from pathlib import Path

import SimpleITK as sitk
import slicer
from slicer.i18n import tr as _

from DeepMedLib import ResultNodes, SceneBridge

#: output kind -> the node class that holds it
NODE_CLASSES = {"label_map": "vtkMRMLSegmentationNode", "overlapping_masks": "vtkMRMLSegmentationNode",
                "scalar_volume": "vtkMRMLScalarVolumeNode",
                "image": "vtkMRMLScalarVolumeNode", "table": "vtkMRMLTableNode",
                "sequence": "vtkMRMLSequenceNode"}
#: output kind -> the file name the worker writes it to
OUTPUT_FILES = {"table": "output.csv", "overlapping_masks": "output.seg.nrrd"}


def nodeClass(kind: str) -> str:
    if kind not in NODE_CLASSES:
        raise ValueError(f"this version of DeepMed cannot show a model output of kind '{kind}' "
                         f"(known: {', '.join(NODE_CLASSES)})")
    return NODE_CLASSES[kind]


def actionName(kind: str, inputs: str = "images") -> str:
    """The verb on the Apply button: Segment (segmentations), Predict, or Generate (inputs that are no images)."""
    if inputs in ("none", "conditions"):
        return _("Generate")
    return _("Segment") if kind in ("label_map", "overlapping_masks") else _("Predict")


def outputFileName(kind: str) -> str:
    nodeClass(kind)
    return OUTPUT_FILES.get(kind, "output.nrrd")


def readOutput(kind: str, path: Path):
    """What the worker wrote: a SimpleITK image, a list of table rows (dicts) or a list of images (frames)."""
    if kind == "table":
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    image = sitk.ReadImage(str(path))
    if kind == "sequence":
        return imageFrames(image)
    return image


def imageFrames(image: sitk.Image) -> list[sitk.Image]:
    """The 3D frames of a 4D image (the last axis indexes them); a 3D image is one frame."""
    if image.GetDimension() == 3:
        return [image]
    size = list(image.GetSize())
    frames = []
    for index in range(size[3]):
        frames.append(sitk.Extract(image, size[:3] + [0], [0, 0, 0, index],
                                   sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX))
    return frames


def addOutput(kind: str, result, reference, labels: list[dict], name: str, node=None, showIn3D: bool = False):
    """Put ``result`` (from :func:`readOutput`) into the scene as the node that ``kind`` calls for.
    ``reference``: the (first) input volume, or None for a model that takes no image; ``labels``: the card's
    ({value, name, color}, ``ModelCard.label_dicts()``) for segmentations."""
    nodeClass(kind)
    if kind == "label_map":
        return SceneBridge.addSegmentationFromLabelImage(result, reference, labels, name,
                                                         segmentationNode=node, showIn3D=showIn3D)
    if kind == "overlapping_masks":
        return ResultNodes.addOverlappingMasks(result, reference, labels, name,
                                               segmentationNode=node, showIn3D=showIn3D)
    if kind == "scalar_volume":
        return SceneBridge.addScalarVolumeFromImage(result, reference, name, volumeNode=node)
    scene = reference.GetScene() if reference is not None else slicer.mrmlScene
    if kind == "table":
        return ResultNodes.addTableFromRows(result, scene, name, tableNode=node, besideNode=reference)
    if kind == "sequence":
        return ResultNodes.addSequenceFromImages(result, scene, name, sequenceNode=node, besideNode=reference)
    return ResultNodes.addVolumeOnOwnGrid(result, scene, name, volumeNode=node, besideNode=reference)
