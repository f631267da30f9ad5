"""Image input/output through SimpleITK, keeping spacing, origin and direction exactly."""

from deepmed.io.geometry import Grid, grid_differences, same_grid
from deepmed.io.image_io import IMAGE_EXTENSIONS, read_channels, read_image, strip_image_extension, write_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "Grid",
    "grid_differences",
    "read_channels",
    "read_image",
    "same_grid",
    "strip_image_extension",
    "write_image",
]
