"""A conditional 3D generator and a projection discriminator (DCGAN shape, small enough for a CPU).

``ConditionalGenerator(z, c)``: noise and condition values -> a volume in [-1, 1]. The condition enters twice:
concatenated to the noise before the first (linear) layer, as constant input channels of every block's
convolution beside the voxel coordinates (CoordConv, Liu et al. 2018: a shape's position can follow a value),
and as a per-channel scale and shift (FiLM, Perez et al. 2018) after every block.

``ProjectionDiscriminator(x, c)`` -> (score, condition estimate): spectral-normalised strided convolutions
(Miyato et al. 2018), a score ``linear(h) + <embed(c), h>`` (the projection discriminator of Miyato & Koyama
2018, with a continuous condition) and an auxiliary head that regresses the condition from the image.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm


def _levels(image_size: list[int], base_size: int) -> int:
    """Number of x2 steps from ``base_size`` to ``image_size`` (every axis must be base * 2^k)."""
    steps = set()
    for size in image_size:
        k, value = 0, base_size
        while value < size:
            value, k = value * 2, k + 1
        if value != size:
            raise ValueError(f"image size {size} is not {base_size} times a power of two")
        steps.add(k)
    if len(steps) != 1:
        raise ValueError(f"image size {image_size}: every axis needs the same number of x2 steps")
    return steps.pop()


def _coordinates(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, Z, Y, X) voxel-centre coordinates in [-1, 1] for a feature volume like ``x`` (CoordConv)."""
    axes = [torch.linspace(-1 + 1 / n, 1 - 1 / n, n, device=x.device, dtype=x.dtype) for n in x.shape[2:]]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    return grid[None].expand(x.shape[0], -1, -1, -1, -1)


class _FiLMBlock(nn.Module):
    """Upsample x2; convolution of the features with the voxel coordinates and the condition values as extra
    channels (so that a condition can say *where*); group norm (per sample: train and eval alike); condition
    scale/shift (FiLM); ReLU."""

    def __init__(self, in_channels: int, out_channels: int, conditions: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv3d(in_channels + 3 + conditions, out_channels, 3, padding=1)
        self.norm = nn.GroupNorm(min(8, out_channels), out_channels, affine=False)
        self.film = nn.Linear(conditions, 2 * out_channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        planes = c[:, :, None, None, None].expand(-1, -1, *x.shape[2:])
        x = self.norm(self.conv(torch.cat([x, _coordinates(x), planes], dim=1)))
        scale, shift = self.film(c).chunk(2, dim=1)
        x = x * (1 + scale[:, :, None, None, None]) + shift[:, :, None, None, None]
        return torch.relu(x)


class ConditionalGenerator(nn.Module):
    """Noise (``latent_dim``) and ``conditions`` values -> (``out_channels``, *image_size*) in [-1, 1].

    Args:
        conditions: number of condition values.
        image_size: output size (z, y, x), each ``base_size`` times the same power of two.
        latent_dim: length of the noise vector.
        channels: feature channels at the base size; halved at every upsampling (at least 8).
        out_channels: channels of the generated image.
        base_size: edge of the first feature volume.
    """

    def __init__(self, conditions: int, image_size: list[int], latent_dim: int = 16, channels: int = 64,
                 out_channels: int = 1, base_size: int = 4):
        super().__init__()
        self.latent_dim, self.base_size = latent_dim, base_size
        levels = _levels(list(image_size), base_size)
        widths = [max(8, channels // 2 ** i) for i in range(levels + 1)]
        self.widths = widths
        self.stem = nn.Linear(latent_dim + conditions, widths[0] * base_size ** 3)
        self.blocks = nn.ModuleList(_FiLMBlock(widths[i], widths[i + 1], conditions) for i in range(levels))
        self.head = nn.Conv3d(widths[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.stem(torch.cat([z, c], dim=1)).view(z.shape[0], self.widths[0], *[self.base_size] * 3)
        x = torch.relu(x)
        for block in self.blocks:
            x = block(x, c)
        return torch.tanh(self.head(x))


class ProjectionDiscriminator(nn.Module):
    """Image and condition -> (realism score per sample, condition estimate per sample).

    Args:
        conditions: number of condition values.
        image_size: input size (z, y, x), each ``base_size`` times the same power of two.
        channels: feature channels of the last (coarsest) level; halved towards the input (at least 8).
        in_channels: channels of the image.
        base_size: edge of the last feature volume.
    """

    def __init__(self, conditions: int, image_size: list[int], channels: int = 64, in_channels: int = 1,
                 base_size: int = 4):
        super().__init__()
        levels = _levels(list(image_size), base_size)
        widths = [max(8, channels // 2 ** (levels - 1 - i)) for i in range(levels)]
        layers: list[nn.Module] = []
        previous = in_channels
        for width in widths:
            layers += [spectral_norm(nn.Conv3d(previous, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.flat = previous * base_size ** 3
        self.hidden = spectral_norm(nn.Linear(self.flat, channels))
        self.score = spectral_norm(nn.Linear(channels, 1))
        self.embed = spectral_norm(nn.Linear(conditions, channels, bias=False))
        self.auxiliary = nn.Linear(channels, conditions)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = nn.functional.leaky_relu(self.hidden(self.features(x).flatten(1)), 0.2)
        score = self.score(h).squeeze(1) + (self.embed(c) * h).sum(dim=1)
        return score, self.auxiliary(h)
