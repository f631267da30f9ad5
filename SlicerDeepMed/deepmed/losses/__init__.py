"""Losses by name: ``LOSSES.get(name)(num_classes=..., **args)``."""

from deepmed.losses.registry import LOSSES, allow_for, build_loss, losses_for

__all__ = ["LOSSES", "allow_for", "build_loss", "losses_for"]
