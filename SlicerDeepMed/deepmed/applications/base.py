"""The Application interface (NiftyNet's Application, on PyTorch + MONAI)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from deepmed.utils.registry import Registry

APPLICATIONS = Registry("application")


class Application(ABC):
    """What one kind of task defines; the driver, trainer and predictor handle everything else.

    Attributes:
        name: registry name, stored in the model card.
        target_is_label: targets are integer label maps (nearest-neighbour resampling) or scalar images.
        default_loss: loss used when the config says ``auto``.
        default_sampling: patch sampling used when the config says ``auto``.
        key_metric: validation metric that selects the best checkpoint; ``higher_is_better`` says which way.
    """

    name: str
    target_is_label: bool
    default_loss: str
    default_sampling: str
    key_metric: str
    higher_is_better: bool

    @abstractmethod
    def out_channels(self, labels: dict[str, int]) -> int:
        """Number of network output channels."""

    @abstractmethod
    def target_statistics(self, targets: list[np.ndarray]) -> dict:
        """Statistics of the training targets saved in the card (e.g. regression scaling)."""

    @abstractmethod
    def encode_target(self, target: np.ndarray, stats: dict, labels: dict[str, int]) -> np.ndarray:
        """Raw target array -> what the loss sees (class indices, or a scaled scalar map)."""

    @abstractmethod
    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Network output -> the quantity resampled onto the input grid (probabilities, scaled values)."""

    @abstractmethod
    def decode_output(self, resampled: np.ndarray, stats: dict, labels: dict[str, int]) -> np.ndarray:
        """(C, Z, Y, X) activation on the input grid -> final array (label values, or target units)."""

    @abstractmethod
    def validation_metrics(self, activation: torch.Tensor, target: torch.Tensor, stats: dict,
                           labels: dict[str, int]) -> dict[str, float]:
        """Metrics of one validation case on the working grid; must include ``key_metric``."""

    def network_defaults(self, network: str) -> dict:
        """Constructor arguments this application prefers for ``network`` (the user's args still win)."""
        return {}


def get_application(name: str) -> Application:
    return APPLICATIONS.get(name)()
