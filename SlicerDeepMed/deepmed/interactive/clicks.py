"""Clicks given to an interactive model (``deepmed.io.clicks``: points in physical RAS or LPS, per label, +/-)."""

from deepmed.io.clicks import COORDINATE_SYSTEMS, Click, ClickSet, read_clicks, write_clicks

__all__ = ["COORDINATE_SYSTEMS", "Click", "ClickSet", "read_clicks", "write_clicks"]
