"""Read one case of a manifest: its channels on one grid and its label aligned to that grid."""

from __future__ import annotations

import SimpleITK as sitk

from deepmed.data.manifest import Case
from deepmed.errors import DeepMedError
from deepmed.io.geometry import align_to_grid, grid_differences
from deepmed.io.image_io import read_channels, read_image


def read_case(case: Case, with_label: bool = True) -> tuple[list[sitk.Image], sitk.Image | None]:
    """Channels (float32, all on channel 0's grid) and the label (on the same grid), or DeepMedError."""
    channels = read_channels(case.images)
    reference = channels[0]
    for index, channel in enumerate(channels):
        if channel.GetDimension() != 3:
            raise DeepMedError(f"case {case.id}: channel {index}: expected a 3D image, got {channel.GetDimension()}D")
        try:
            channels[index] = sitk.Cast(align_to_grid(channel, reference), sitk.sitkFloat32)
        except ValueError as exc:
            raise DeepMedError(f"case {case.id}: channel {index} is not on the grid of channel 0: {exc}") from None
    label = None
    if with_label and case.label is not None:
        raw = read_image(case.label)
        try:
            label = align_to_grid(raw, reference)
        except ValueError:
            raise DeepMedError(f"case {case.id}: {case.label.name}: label is not on the image grid (label vs image): "
                               f"{'; '.join(grid_differences(raw, reference))}") from None
    return channels, label
