"""The one place where Slicer's RAS meets ITK's LPS.

A volume node's geometry is its IJK-to-RAS matrix; a SimpleITK image's is spacing, origin and direction
in LPS. ``IJKToRAS = diag(-1, -1, 1) @ [direction @ diag(spacing) | origin]``. Numpy arrays from Slicer
(``arrayFromVolume``) and from SimpleITK (``GetArrayFromImage``) are both indexed (K, J, I).
"""

from __future__ import annotations

import numpy as np
import vtk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])  # its own inverse
GEOMETRY_TOLERANCE = 1e-4  # mm (or direction cosine) below which two grids are the same grid


def ijkToRasFromImage(image) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a 3D SimpleITK image."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = LPS_TO_RAS @ np.array(image.GetOrigin(), dtype=float)
    return matrix


def setImageGeometryFromIjkToRas(image, ijkToRas: np.ndarray) -> None:
    """Give a 3D SimpleITK image the spacing, origin and direction of an IJK-to-RAS matrix."""
    ijkToRas = np.asarray(ijkToRas, dtype=float)
    lps = LPS_TO_RAS @ ijkToRas[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"IJK-to-RAS matrix has a zero-length axis: spacing {spacing.tolist()}")
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps / spacing).ravel().tolist())
    image.SetOrigin((LPS_TO_RAS @ ijkToRas[:3, 3]).tolist())


def ijkToRasFromNode(volumeNode) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def setNodeIjkToRas(volumeNode, ijkToRas: np.ndarray) -> None:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ijkToRas[r][c]))
    volumeNode.SetIJKToRASMatrix(matrix)


def copyNodeGeometry(source, target) -> None:
    """Give ``target`` exactly the IJK-to-RAS matrix of ``source`` (bit for bit)."""
    matrix = vtk.vtkMatrix4x4()
    source.GetIJKToRASMatrix(matrix)
    target.SetIJKToRASMatrix(matrix)


def gridDifference(shapeA, matrixA, shapeB, matrixB) -> str:
    """'' when two grids (array shape + IJK-to-RAS) are the same grid, else what differs (expected vs got)."""
    if tuple(shapeA) != tuple(shapeB):
        return f"size {tuple(reversed(shapeB))} instead of {tuple(reversed(shapeA))} (I, J, K)"
    difference = np.abs(np.asarray(matrixA) - np.asarray(matrixB)).max()
    if difference > GEOMETRY_TOLERANCE:
        return f"IJK-to-RAS matrix differs by up to {difference:.3g}"
    return ""
