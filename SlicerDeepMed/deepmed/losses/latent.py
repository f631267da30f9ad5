"""Loss of a variational encoder-decoder (VAE): reconstruction error plus ``beta`` times the KL divergence of the
latent posterior N(mean, exp(log-variance)) from the prior N(0, I) (Kingma & Welling 2014; beta-VAE,
Higgins et al. 2017). ``beta = 0`` (or no log-variance) leaves the reconstruction loss alone.

Scale: the reconstruction term is the mean over voxels, the KL term the sum over latent dimensions (nats
per case) averaged over the batch, so ``beta`` trades one nat of code for ``beta`` of per-voxel error.
"""

from __future__ import annotations

import torch

from deepmed.utils.choices import look_up

RECONSTRUCTION = {"mse": torch.nn.functional.mse_loss, "l1": torch.nn.functional.l1_loss}


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over the latent dimensions, averaged over the batch."""
    return (-0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(dim=1)).mean()


class LatentLoss(torch.nn.Module):
    """``forward(reconstruction, image, mean, logvar)`` -> (total, reconstruction term, KL term).

    Args:
        reconstruction: ``mse`` or ``l1`` (per voxel).
        beta: weight of the KL term (0: no KL term, a deterministic code).
    """

    def __init__(self, reconstruction: str = "mse", beta: float = 1e-4):
        super().__init__()
        self.reconstruction = look_up("reconstruction loss", reconstruction, RECONSTRUCTION)
        self.beta = float(beta)

    def forward(self, reconstruction: torch.Tensor, image: torch.Tensor, mean: torch.Tensor,
                logvar: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        error = RECONSTRUCTION[self.reconstruction](reconstruction, image)
        if logvar is None or self.beta == 0:
            return error, error, torch.zeros((), device=error.device)
        kl = kl_to_standard_normal(mean, logvar)
        return error + self.beta * kl, error, kl
