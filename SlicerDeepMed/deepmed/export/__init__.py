"""Deployable exports of trained models: ONNX networks plus the pipeline around them (``deepmed export``)."""
