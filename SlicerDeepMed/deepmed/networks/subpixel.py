"""A sub-pixel convolution network that upsamples by an integer factor per axis (ESPCN, Shi et al. 2016, with
EDSR's residual blocks without normalisation, Lim et al. 2017).

Why this design: every convolution runs on the *low-resolution* grid (a 4x4x1 factor makes the fine grid 16
times larger, so a network working on the upsampled input would cost 16 times more); the last convolution
predicts ``prod(factor)`` values per coarse voxel which a periodic shuffle places on the fine grid; and the
network learns only the residual over trilinear upsampling of its input (``align_corners=False``: the
fine voxel centres of ``deepmed.transforms.resolution.fine_grid``), whose head starts at zero, so that an
untrained network already equals trilinear interpolation. MONAI's ``SubpixelUpsample`` takes one factor for
all axes; the anisotropic shuffle (e.g. 4x4x1) is the few lines of ``pixel_shuffle``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import ResidualUnit


def pixel_shuffle(x: torch.Tensor, scale: Sequence[int]) -> torch.Tensor:
    """(B, C * sz * sy * sx, Z, Y, X) -> (B, C, Z * sz, Y * sy, X * sx): each coarse voxel's channels become
    its block of fine voxels (the 3D, per-axis form of ``torch.nn.PixelShuffle``)."""
    sz, sy, sx = (int(s) for s in scale)
    b, c, z, y, x_ = x.shape
    out = c // (sz * sy * sx)
    x = x.reshape(b, out, sz, sy, sx, z, y, x_)
    return x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, out, z * sz, y * sy, x_ * sx)


class SubpixelSR(torch.nn.Module):
    """Low-resolution image in, image refined by ``scale_factor`` out.

    Args:
        spatial_dims: 3 (volumes).
        in_channels, out_channels: image channels (the trilinear skip needs them equal).
        scale_factor: integer factor per tensor axis, in (z, y, x) order as ``torch.nn.functional.interpolate``.
        features: channels of the hidden layers.
        blocks: residual blocks (two 3x3x3 convolutions each) on the low-resolution grid.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 1,
                 scale_factor: Sequence[int] = (1, 2, 2), features: int = 32, blocks: int = 4):
        super().__init__()
        if spatial_dims != 3 or len(scale_factor) != 3:
            raise ValueError(f"expected spatial_dims 3 and three scale factors, got {spatial_dims} and {scale_factor}")
        if in_channels != out_channels:
            raise ValueError(f"in_channels ({in_channels}) must equal out_channels ({out_channels})")
        self.scale_factor = [int(s) for s in scale_factor]
        cells = self.scale_factor[0] * self.scale_factor[1] * self.scale_factor[2]
        self.head = torch.nn.Conv3d(in_channels, features, 3, padding=1)
        self.body = torch.nn.Sequential(*[
            ResidualUnit(3, features, features, subunits=2, act="RELU", norm=None, last_conv_only=True)
            for _ in range(blocks)])
        self.tail = torch.nn.Conv3d(features, out_channels * cells, 3, padding=1)
        torch.nn.init.zeros_(self.tail.weight)  # starts as trilinear interpolation; learns the residual
        torch.nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.scale_factor, mode="trilinear", align_corners=False)
        features = self.head(x)
        features = features + self.body(features)
        return base + pixel_shuffle(self.tail(features), self.scale_factor)
