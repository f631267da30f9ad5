"""One case's input images at inference: paths or SimpleITK images, one per channel, on channel 0's grid."""

from __future__ import annotations

import os

import SimpleITK as sitk

from deepmed.errors import DeepMedError
from deepmed.io.geometry import align_to_grid, grid_differences
from deepmed.io.image_io import read_channels
from deepmed.model.card import ModelCard


def input_channels(inputs, card: ModelCard, model_name: str, align: bool = True) -> list[sitk.Image]:
    """The channels the card's ``inputs`` name (3D, all on channel 0's grid), or a one-line error. ``align``:
    channels within rounding of channel 0's grid are put on it exactly and cast to float32; otherwise (nnU-Net,
    which checks shape and spacing itself) they must lie on it already and keep their pixel type."""
    if isinstance(inputs, (sitk.Image, str, os.PathLike)):
        inputs = [inputs]
    channels: list[sitk.Image] = []
    for item in inputs:
        channels.extend([item] if isinstance(item, sitk.Image) else read_channels(item))
    expected = card.channel_names
    if len(channels) != len(expected):
        raise DeepMedError(f"model {model_name} expects {len(expected)} input channel(s) ({', '.join(expected)}), "
                           f"got {len(channels)}")
    for index, channel in enumerate(channels):
        if channel.GetDimension() != 3:
            raise DeepMedError(f"input channel {index}: expected a 3D image, got {channel.GetDimension()}D")
        if not align:
            if problems := grid_differences(channel, channels[0]):
                raise DeepMedError(f"input channel {index} is not on the grid of channel 0: {'; '.join(problems)}")
            continue
        try:
            channels[index] = sitk.Cast(align_to_grid(channel, channels[0]), sitk.sitkFloat32)
        except ValueError:
            raise DeepMedError(f"input channel {index} is not on the grid of channel 0: "
                               f"{'; '.join(grid_differences(channel, channels[0]))}") from None
    return channels
