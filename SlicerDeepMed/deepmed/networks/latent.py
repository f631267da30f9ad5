"""The two halves of MONAI's ``VarAutoEncoder``: an encoder (image -> mean and log-variance of the latent code)
and a decoder (latent code -> image), trained and saved as two networks.

Both are cut from one ``monai.networks.nets.VarAutoEncoder`` built with the same arguments, so the layers are
MONAI's own; each half keeps only its modules (the other half's weights are dropped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _full(args: dict):
    from monai.networks.nets import VarAutoEncoder

    return VarAutoEncoder(**args)


class LatentEncoder(torch.nn.Module):
    """Image (B, C, D, H, W) -> (mean, log-variance), each (B, latent_size)."""

    def __init__(self, **args):
        super().__init__()
        full = _full(args)
        self.encode, self.intermediate, self.mu, self.logvar = full.encode, full.intermediate, full.mu, full.logvar

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.intermediate(self.encode(image)).flatten(1)
        return self.mu(features), self.logvar(features)


class LatentDecoder(torch.nn.Module):
    """Latent code (B, latent_size) -> image (B, C, D, H, W) on the encoder's input shape."""

    def __init__(self, **args):
        super().__init__()
        full = _full(args)
        self.decodeL, self.decode = full.decodeL, full.decode
        self.shape = (int(full.channels[-1]), *(int(n) for n in full.final_size))
        self.use_sigmoid = bool(full.use_sigmoid)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        features = F.relu(self.decodeL(code)).view(code.shape[0], *self.shape)
        image = self.decode(features)
        return torch.sigmoid(image) if self.use_sigmoid else image
