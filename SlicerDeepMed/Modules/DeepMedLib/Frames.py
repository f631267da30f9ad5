"""How to get from one node's local frame (its coordinates before its parent transforms) to another's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import slicer
import vtk

IDENTITY_TOLERANCE = 1e-6  # a transform between two frames closer than this to identity is no transform


@dataclass(frozen=True)
class FrameChange:
    """From ``fromNode``'s local frame to ``toNode``'s: ``transform`` (a vtkGeneralTransform, any kind) and,
    when it is linear, ``matrix`` (4x4, RAS); ``None`` for a non-linear one."""

    transform: vtk.vtkGeneralTransform
    matrix: np.ndarray | None

    @property
    def isIdentity(self) -> bool:
        return self.matrix is not None and float(np.abs(self.matrix - np.eye(4)).max()) < IDENTITY_TOLERANCE


def frameChange(fromNode, toNode) -> FrameChange:
    """The change of frame between two transformable nodes (the same parent transform: the identity)."""
    general = vtk.vtkGeneralTransform()
    if fromNode.GetTransformNodeID() == toNode.GetTransformNodeID():
        return FrameChange(general, np.eye(4))
    source, target = fromNode.GetParentTransformNode(), toNode.GetParentTransformNode()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(source, target, general)
    linear = vtk.vtkTransform()
    if not slicer.vtkMRMLTransformNode.IsGeneralTransformLinear(general, linear):
        return FrameChange(general, None)
    matrix = np.array([[linear.GetMatrix().GetElement(r, c) for c in range(4)] for r in range(4)])
    return FrameChange(general, matrix)
