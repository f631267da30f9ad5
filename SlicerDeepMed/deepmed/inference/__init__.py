"""Inference: sliding-window prediction on the working grid, results written on the input's exact grid."""
