"""Workflows that wire training, inference and evaluation together (cross-validation); above all three."""
