"""The voxel grid of an image (size, spacing, origin, direction) and how two grids differ.

Everything in the engine is in ITK's LPS world coordinates; the Slicer bridge converts to RAS
in one place (``DeepMedLib/Geometry.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

#: Tolerances used when comparing grids: physical quantities in mm, direction cosines unitless.
SPACING_TOL = 1e-4
ORIGIN_TOL = 1e-3
DIRECTION_TOL = 1e-4


@dataclass(frozen=True)
class Grid:
    """Where an image's voxels lie in the world (LPS, mm)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Grid:
        return cls(
            tuple(image.GetSize()),
            tuple(image.GetSpacing()),
            tuple(image.GetOrigin()),
            tuple(image.GetDirection()),
        )

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Stamp this grid's spacing, origin and direction on ``image`` (sizes must already agree)."""
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def to_json(self) -> dict:
        return {"size": list(self.size), "spacing": list(self.spacing), "origin": list(self.origin),
                "direction": list(self.direction)}


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def grid_differences(a: sitk.Image | Grid, b: sitk.Image | Grid) -> list[str]:
    """Describe every way in which grid ``a`` differs from grid ``b``; empty when they match.

    Example:
        >>> grid_differences(Grid((2, 2, 2), (1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1)),
        ...                  Grid((2, 2, 3), (1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))
        ['size (2, 2, 2) vs (2, 2, 3)']
    """
    ga = a if isinstance(a, Grid) else Grid.of(a)
    gb = b if isinstance(b, Grid) else Grid.of(b)
    problems = []
    if ga.size != gb.size:
        problems.append(f"size {_fmt(ga.size)} vs {_fmt(gb.size)}")
    checks = (("spacing", ga.spacing, gb.spacing, SPACING_TOL), ("origin", ga.origin, gb.origin, ORIGIN_TOL),
              ("direction", ga.direction, gb.direction, DIRECTION_TOL))
    for name, va, vb, tol in checks:
        if len(va) != len(vb) or not np.allclose(va, vb, atol=tol, rtol=0):
            problems.append(f"{name} {_fmt(va)} vs {_fmt(vb)}")
    return problems


def same_grid(a: sitk.Image | Grid, b: sitk.Image | Grid) -> bool:
    """True when ``a`` and ``b`` have the same size, spacing, origin and direction (within tolerance)."""
    return not grid_differences(a, b)


def _index_to_world(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Matrix M and offset o with world = M @ index + o."""
    dim = len(grid.size)
    direction = np.asarray(grid.direction, dtype=np.float64).reshape(dim, dim)
    return direction @ np.diag(grid.spacing), np.asarray(grid.origin, dtype=np.float64)


def same_voxel_centres(a: sitk.Image | Grid, b: sitk.Image | Grid, tol: float = 1e-3) -> bool:
    """True when the two grids hold the same voxel centres, perhaps in another axis order or direction.

    Such a pair (e.g. a DICOM series and a label map saved with a flipped y axis) is one physical grid:
    ``align_to_grid`` maps one onto the other exactly, without interpolation.
    """
    ga = a if isinstance(a, Grid) else Grid.of(a)
    gb = b if isinstance(b, Grid) else Grid.of(b)
    if len(ga.size) != len(gb.size) or int(np.prod(ga.size)) != int(np.prod(gb.size)):
        return False
    ma, oa = _index_to_world(ga)
    mb, ob = _index_to_world(gb)
    # continuous index in b of a's voxel centres: idx_b = inv(mb) @ (ma @ idx_a + oa - ob)
    mapping = np.linalg.solve(mb, ma)
    offset = np.linalg.solve(mb, oa - ob)
    if not np.allclose(mapping, np.round(mapping), atol=tol) or not np.allclose(offset, np.round(offset), atol=tol):
        return False
    rounded = np.round(mapping)
    if not np.allclose(np.abs(rounded).sum(axis=0), 1) or not np.allclose(np.abs(rounded).sum(axis=1), 1):
        return False
    corners = np.array(np.meshgrid(*[[0, s - 1] for s in ga.size], indexing="ij")).reshape(len(ga.size), -1)
    mapped = rounded @ corners + np.round(offset)[:, None]
    return bool(np.all(mapped >= -tol) and np.all(mapped <= (np.asarray(gb.size)[:, None] - 1 + tol)))


def align_to_grid(image: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Return ``image`` on ``reference``'s grid when both hold the same voxel centres (exact, no interpolation).

    Raises:
        ValueError: when the grids differ physically (resample instead).
    """
    if same_grid(image, reference):
        out = sitk.Image(image)
        out.CopyInformation(reference)
        return out
    if not same_voxel_centres(reference, image):
        raise ValueError("; ".join(grid_differences(image, reference)))
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID())
