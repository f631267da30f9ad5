"""A synthetic cohort generated on the fly: two structures of varied shape and contrast in textured
background, with noise, a bias field, random spacing, random orientation (flips, permutations, oblique)
and random origin. Structures are defined in world coordinates, so labels are exact on every grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

LABELS = {"background": 0, "organ": 1, "lesion": 2}


def random_direction(rng: np.random.Generator) -> np.ndarray:
    """A signed axis permutation (sometimes left-handed), tilted by up to 20 degrees half of the time."""
    permutation = np.eye(3)[rng.permutation(3)]
    signs = np.diag(rng.choice([-1.0, 1.0], size=3))
    direction = permutation @ signs
    if rng.random() < 0.5:
        tilt = Rotation.from_rotvec(rng.normal(size=3) / np.sqrt(3) * np.deg2rad(rng.uniform(5, 20))).as_matrix()
        direction = tilt @ direction
    return direction


def _ellipsoid(world: np.ndarray, centre: np.ndarray, radii: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    local = (world - centre) @ rotation
    return np.sum((local / radii) ** 2, axis=-1) <= 1.0


def make_case(seed: int) -> tuple[sitk.Image, sitk.Image]:
    """One synthetic MR-like case and its label map (0 background, 1 organ, 2 lesion)."""
    rng = np.random.default_rng(seed)
    spacing = np.array([rng.uniform(1.0, 1.4), rng.uniform(1.0, 1.4), rng.uniform(1.6, 2.4)])
    extent_mm = np.array([56.0, 56.0, 56.0]) * rng.uniform(0.95, 1.1, size=3)
    size = np.round(extent_mm / spacing).astype(int)
    direction = random_direction(rng)
    origin = rng.uniform(-100, 100, size=3)
    index = np.stack(np.meshgrid(*[np.arange(s) for s in size[::-1]], indexing="ij"), axis=-1)[..., ::-1]
    world = origin + (index * spacing) @ direction.T  # (Z, Y, X, 3)
    centre = origin + direction @ (spacing * (size - 1) / 2)

    organ_centre = centre + rng.uniform(-5, 5, size=3)
    organ_radii = rng.uniform(10, 16, size=3)
    organ = _ellipsoid(world, organ_centre, organ_radii, Rotation.random(random_state=seed).as_matrix())
    offset = rng.normal(size=3)
    offset *= rng.uniform(14, 19) / np.linalg.norm(offset)
    lesion = _ellipsoid(world, organ_centre + offset, rng.uniform(6.0, 9.0, size=3),
                        Rotation.random(random_state=seed + 1).as_matrix())
    label = np.zeros(organ.shape, dtype=np.uint8)
    label[organ] = 1
    label[lesion] = 2

    background = 100 + 12 * gaussian_filter(rng.normal(size=organ.shape), 2.0) * 3
    image = background.copy()
    image[organ] += rng.uniform(45, 80)
    image[lesion] -= rng.uniform(35, 60)
    image = gaussian_filter(image, 0.7)
    coords = (world - centre) / 40.0
    bias = np.exp(coords @ rng.normal(scale=0.15, size=3) + 0.1 * np.sum(coords**2, axis=-1) * rng.normal())
    image = image * bias + rng.normal(scale=rng.uniform(6, 12), size=image.shape)

    itk_image = sitk.GetImageFromArray(image.astype(np.float32))
    itk_label = sitk.GetImageFromArray(label)
    for img in (itk_image, itk_label):
        img.SetSpacing(spacing.tolist())
        img.SetOrigin(origin.tolist())
        img.SetDirection(direction.ravel().tolist())
    return itk_image, itk_label


def write_cohort(folder: Path, n_cases: int = 20, seed: int = 0) -> Path:
    """Write ``n_cases`` cases as NIfTI plus a manifest; returns the manifest path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    training = []
    for i in range(n_cases):
        image, label = make_case(seed * 1000 + i)
        name = f"synth_{i:03d}"
        sitk.WriteImage(image, str(folder / "images" / f"{name}.nii.gz"))
        sitk.WriteImage(label, str(folder / "labels" / f"{name}.nii.gz"))
        training.append({"id": name, "image": [f"images/{name}.nii.gz"], "label": f"labels/{name}.nii.gz"})
    manifest = {"name": "synthetic", "description": "DeepMed synthetic demo cohort (organ + lesion, MR-like)",
                "channel_names": {"0": "MR"}, "labels": LABELS, "training": training}
    path = folder / "dataset.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
