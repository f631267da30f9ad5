"""Python API: ``deepmed.train(dataset, out, ...)``."""

from deepmed.training.driver import train

__all__ = ["train"]
