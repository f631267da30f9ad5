"""Where each kind of model output goes in the scene. The modules never branch on an application's name:
the model card's ``output_kind`` says what the output is."""

from __future__ import annotations

from DeepMedLib import SceneBridge

#: output kind -> the node class that holds it
NODE_CLASSES = {"label_map": "vtkMRMLSegmentationNode", "scalar_volume": "vtkMRMLScalarVolumeNode",
                "image": "vtkMRMLScalarVolumeNode"}
#: output kind -> the verb on the Apply button
ACTIONS = {"label_map": "Segment"}


def nodeClass(kind: str) -> str:
    if kind not in NODE_CLASSES:
        raise ValueError(f"this version of DeepMed cannot show a model output of kind '{kind}' "
                         f"(known: {', '.join(NODE_CLASSES)})")
    return NODE_CLASSES[kind]


def actionName(kind: str) -> str:
    return ACTIONS.get(kind, "Predict")


def addOutput(kind: str, image, reference, card: dict, name: str, node=None, showIn3D: bool = False):
    """Put ``image`` (on ``reference``'s grid) into the scene as the node that ``kind`` calls for."""
    if nodeClass(kind) == "vtkMRMLSegmentationNode":
        return SceneBridge.addSegmentationFromLabelImage(image, reference, card.get("labels", []), name,
                                                         segmentationNode=node, showIn3D=showIn3D)
    return SceneBridge.addScalarVolumeFromImage(image, reference, name, volumeNode=node)
