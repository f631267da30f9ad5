"""A CT-like synthetic cohort for the accuracy-per-minute benchmark: an abdomen-like slab in Hounsfield units
on an anisotropic grid (~0.8 x 0.8 x 2.5 mm) holding an organ, a small LOW-CONTRAST lesion inside it and a
thin contrast-enhanced vessel, with fat, muscle, a vertebra and an unlabelled organ-like distractor.

Shapes are defined in world coordinates (mm) and rasterised at voxel centres, so labels are exact; the
image is made from the same shapes, blurred a little (the scanner's point spread) and given correlated noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

CT_LABELS = {"background": 0, "organ": 1, "lesion": 2, "vessel": 3}
TEST_SEED_OFFSET = 500_000  # held-out cases come from seeds no training case uses


def _grid(rng: np.random.Generator):
    """Spacing (x, y, z) mm, size (x, y, z) and world coordinates (Z, Y, X) of each voxel centre."""
    in_plane = rng.uniform(0.72, 0.9)
    spacing = np.array([in_plane, in_plane, rng.uniform(2.0, 3.0)])
    extent = np.array([100.0, 100.0, 80.0]) * rng.uniform(0.95, 1.05, size=3)
    size = np.round(extent / spacing).astype(int)
    origin = np.array([-extent[0] / 2, -extent[1] / 2, rng.uniform(-400, -300)])
    axes = [origin[i] + spacing[i] * np.arange(size[i]) for i in range(3)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return spacing, size, origin, (x, y, z)


def ellipsoid(x, y, z, centre, radii, angle: float) -> np.ndarray:
    """Ellipsoid rotated by ``angle`` about the z axis."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / radii[0]) ** 2 + (v / radii[1]) ** 2 + (dz / radii[2]) ** 2 <= 1.0


def make_ct_case(seed: int) -> tuple[sitk.Image, sitk.Image]:
    """One CT-like case (float32 HU) and its label map (0 background, 1 organ, 2 lesion, 3 vessel)."""
    rng = np.random.default_rng(seed)
    spacing, size, origin, (x, y, z) = _grid(rng)
    zc = origin[2] + spacing[2] * (size[2] - 1) / 2
    body = (x / 46.0) ** 2 + (y / 38.0) ** 2 <= 1.0
    muscle = body & ((x / 43.0) ** 2 + (y / 35.0) ** 2 > 1.0)  # the wall under the fat layer
    fat = body & ((x / 40.0) ** 2 + (y / 32.0) ** 2 > 1.0) & ~muscle
    vertebra = ((x / 9.0) ** 2 + ((y - 24.0) / 8.0) ** 2 <= 1.0)

    organ_centre = np.array([rng.uniform(-14, -6), rng.uniform(-8, 2), zc + rng.uniform(-6, 6)])
    organ_radii = np.array([rng.uniform(19, 25), rng.uniform(15, 20), rng.uniform(24, 32)])
    organ_angle = rng.uniform(-0.5, 0.5)
    organ = ellipsoid(x, y, z, organ_centre, organ_radii, organ_angle)
    distractor = ellipsoid(x, y, z, [rng.uniform(20, 26), rng.uniform(4, 10), zc + rng.uniform(-10, 10)],
                            rng.uniform(7, 10, size=3), rng.uniform(0, np.pi)) & ~organ
    # the lesion: 3.5-6 mm radius, well inside the organ, 12-22 HU darker than it (hypodense, low contrast)
    lesion_radii = rng.uniform(3.5, 6.0, size=3) * np.array([1, 1, 1.3])
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    depth = (organ_radii.min() - lesion_radii.max() - 3) * rng.uniform(0, 0.8)
    lesion_centre = organ_centre + direction * depth
    lesion = ellipsoid(x, y, z, lesion_centre, lesion_radii, rng.uniform(0, np.pi)) & organ
    # the vessel: a 2-3 mm radius tube (5-8 voxels across in-plane) wandering along z, near/through the organ
    radius = rng.uniform(2.0, 3.0)
    phase, period = rng.uniform(0, 2 * np.pi, size=2), rng.uniform(50, 90, size=2)
    t = (z - zc)
    cx = organ_centre[0] + rng.uniform(4, 12) + 6 * np.sin(2 * np.pi * t / period[0] + phase[0]) + 0.15 * t
    cy = organ_centre[1] + rng.uniform(-6, 6) + 5 * np.sin(2 * np.pi * t / period[1] + phase[1])
    vessel = (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2

    organ_hu = rng.uniform(55, 70)
    image = np.full(x.shape, -1000.0)
    image[body] = rng.uniform(35, 45)  # soft tissue
    image[fat] = rng.uniform(-110, -90)
    image[muscle] = rng.uniform(45, 55)
    image[vertebra] = rng.uniform(450, 700)
    image[distractor] = organ_hu + rng.uniform(-30, -20)
    texture = gaussian_filter(rng.normal(size=x.shape), (1.0, 3.0, 3.0))
    image[organ] = organ_hu + (4 * texture / texture.std())[organ]  # mild parenchymal texture, +-4 HU
    image[lesion] -= rng.uniform(12, 22)
    image[vessel & body] = rng.uniform(170, 240)
    pixel = spacing[::-1]
    image = gaussian_filter(image, 0.6 / pixel)  # ~0.6 mm point spread
    noise = gaussian_filter(rng.normal(size=x.shape), (0.0, 0.8, 0.8))
    image += noise / noise.std() * rng.uniform(12, 18)

    label = np.zeros(x.shape, dtype=np.uint8)
    label[organ] = 1
    label[lesion] = 2
    label[vessel & body] = 3
    itk_image, itk_label = sitk.GetImageFromArray(image.astype(np.float32)), sitk.GetImageFromArray(label)
    for img in (itk_image, itk_label):
        img.SetSpacing(spacing.tolist())
        img.SetOrigin(origin.tolist())
    return itk_image, itk_label


def _write(folder: Path, name: str, seed: int) -> dict:
    image, label = make_ct_case(seed)
    sitk.WriteImage(image, str(folder / "images" / f"{name}.nii.gz"))
    sitk.WriteImage(label, str(folder / "labels" / f"{name}.nii.gz"))
    return {"id": name, "image": [f"images/{name}.nii.gz"], "label": f"labels/{name}.nii.gz"}


def write_ct_cohort(folder: Path, n_cases: int = 24, seed: int = 0, n_test: int = 0) -> Path:
    """Write ``n_cases`` training and ``n_test`` held-out cases (other seeds) as NIfTI plus a manifest
    (held-out cases under ``test``); returns the manifest path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    training = [_write(folder, f"ct_{i:03d}", seed * 1000 + i) for i in range(n_cases)]
    test = [_write(folder, f"ct_test_{i:03d}", TEST_SEED_OFFSET + seed * 1000 + i) for i in range(n_test)]
    manifest = {"name": "synthetic_ct",
                "description": "DeepMed synthetic CT (organ, low-contrast lesion, thin vessel; anisotropic)",
                "channel_names": {"0": "CT"}, "labels": CT_LABELS, "training": training, "test": test}
    path = folder / "dataset.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
