"""Input volumes for the worker, all in the first volume's local frame.

The worker sees files, not transforms: each channel's voxels and IJK-to-RAS. Results come back in the
first input's local frame and are placed under its parent transform (``SceneBridge.placeInFrameOf``).
A channel under the same transform as the first goes as it is (its grid checked by the worker as always).
A channel under another transform (registered to the first, not hardened) would be read in the wrong place,
so it is resampled onto the first volume's grid through the transform between the two frames, as Slicer's
"harden transform" would: linear transforms exactly (one affine map), non-linear ones through a
displacement field sampled at the first volume's voxel centres. Volumes in the scene are never changed.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support

from DeepMedLib.Frames import frameChange
from DeepMedLib.Geometry import LPS_TO_RAS, ijkToRasFromImage
from DeepMedLib.SceneBridge import imageFromVolumeNode

MAX_FIELD_POINTS = 2_000_000  # a displacement field at most this large (48 MB) samples a non-linear transform


def inputImages(volumeNodes) -> list[sitk.Image]:
    """The volumes as SimpleITK images in the first one's local frame (see the module's docstring)."""
    volumeNodes = list(volumeNodes)
    if not volumeNodes:
        return []
    reference = volumeNodes[0]
    referenceImage = imageFromVolumeNode(reference)
    images = [referenceImage]
    for node in volumeNodes[1:]:
        image = imageFromVolumeNode(node)
        change = frameChange(node, reference)
        images.append(image if change.isIdentity else _resampleInto(image, referenceImage, node, reference))
    return images


def _resampleInto(image: sitk.Image, referenceImage: sitk.Image, node, reference) -> sitk.Image:
    """``image`` (in ``node``'s frame) resampled linearly onto ``referenceImage``'s grid; outside the image
    its minimum (air in a CT, background in an MR) rather than 0, which is water in a CT."""
    referenceToNode = frameChange(reference, node)  # resampling maps output points to input points
    if referenceToNode.matrix is not None:
        transform = _affineLps(referenceToNode.matrix)
    else:
        transform = _displacementField(referenceImage, referenceToNode.transform)
    background = float(sitk.GetArrayViewFromImage(image).min())
    resampled = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), referenceImage, transform, sitk.sitkLinear,
                              background, sitk.sitkFloat32)
    if not np.isfinite(sitk.GetArrayViewFromImage(resampled)).all():
        raise ValueError(f"{node.GetName()}: resampling through its transform gave non-finite values")
    return resampled


def _affineLps(referenceToNodeRas: np.ndarray) -> sitk.AffineTransform:
    """A RAS 4x4 (reference frame -> node frame) as the LPS point transform SimpleITK resamples with."""
    transform = sitk.AffineTransform(3)
    transform.SetMatrix((LPS_TO_RAS @ referenceToNodeRas[:3, :3] @ LPS_TO_RAS).ravel().tolist())
    transform.SetTranslation((LPS_TO_RAS @ referenceToNodeRas[:3, 3]).tolist())
    return transform


def _displacementField(referenceImage: sitk.Image, referenceToNode) -> sitk.DisplacementFieldTransform:
    """The non-linear map from the reference's frame to the node's, sampled on the reference's grid (every
    ``step``-th voxel when that grid is large: a displacement field is smooth, SimpleITK interpolates it)."""
    size = np.array(referenceImage.GetSize())
    step = 1
    while np.prod(size // step + 2) > MAX_FIELD_POINTS:
        step += 1
    fieldSize = size // step + 2 if step > 1 else size  # the coarse field reaches past the last voxel
    fieldGrid = sitk.Image([int(n) for n in fieldSize], sitk.sitkUInt8)
    fieldGrid.SetSpacing([sp * step for sp in referenceImage.GetSpacing()])
    fieldGrid.SetOrigin(referenceImage.GetOrigin())
    fieldGrid.SetDirection(referenceImage.GetDirection())
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in fieldSize], indexing="ij"), -1).reshape(-1, 3)
    ijkToRas = ijkToRasFromImage(fieldGrid)
    ras = ijk @ ijkToRas[:3, :3].T + ijkToRas[:3, 3]
    points, moved = vtk.vtkPoints(), vtk.vtkPoints()
    points.SetData(numpy_support.numpy_to_vtk(ras, deep=True))
    referenceToNode.TransformPoints(points, moved)
    displacement = (numpy_support.vtk_to_numpy(moved.GetData()) - ras) @ LPS_TO_RAS  # RAS -> LPS vectors
    # (I, J, K) order -> the (K, J, I) array SimpleITK expects, one 3-vector per voxel
    field = sitk.GetImageFromArray(displacement.reshape(*fieldSize, 3).transpose(2, 1, 0, 3).astype(np.float64),
                                   isVector=True)
    field.CopyInformation(fieldGrid)
    return sitk.DisplacementFieldTransform(field)
