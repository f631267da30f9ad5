"""A network whose logits are divided by a temperature (temperature scaling, see the model card's
``calibration``): softmax(network(x) / T). A scalar T > 0 keeps every voxel's argmax."""

from __future__ import annotations

import torch


class TemperatureScaled(torch.nn.Module):
    """``network``'s output divided by ``temperature`` (deep-supervision lists: each head)."""

    def __init__(self, network: torch.nn.Module, temperature: float):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature: expected a number > 0, got {temperature}")
        self.network = network
        self.temperature = float(temperature)

    def forward(self, image: torch.Tensor):
        output = self.network(image)
        if isinstance(output, (list, tuple)):
            return type(output)(head / self.temperature for head in output)
        return output / self.temperature
