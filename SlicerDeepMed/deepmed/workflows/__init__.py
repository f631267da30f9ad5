"""Workflows that wire training, inference and evaluation together (cross-validation, ONNX export and its
parity check); above all three."""
