"""Python API: ``deepmed.train(dataset, out, ...)`` or ``deepmed.train(TrainRequest(...))``."""

from deepmed.training.driver import train
from deepmed.training.request import TrainRequest

__all__ = ["TrainRequest", "train"]
