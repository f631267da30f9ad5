"""The standard click-simulation protocol (``deepmed.transforms.click_simulation``): a click at the centre of
the largest error region."""

from deepmed.transforms.click_simulation import SimulatedClick, next_click

__all__ = ["SimulatedClick", "next_click"]
