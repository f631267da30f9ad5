"""A two-channel MR-like synthetic cohort for the accuracy-per-minute benchmark, built unlike the CT one: a
head on a zero background, two channels (a contrast-enhanced T1 and a FLAIR) in arbitrary units that vary
from case to case, a smooth bias field, near-isotropic voxels (~1.0 x 1.0 x 1.4 mm), and three classes:

- ventricles (1): two curved CSF lobes, dark in both channels;
- edema (2): an irregular region, bright in FLAIR and barely visible in T1;
- lesion (3): a 2.5-4.5 mm radius enhancing nodule inside the edema, bright in T1 but as bright as the
  edema around it in FLAIR: found from the T1 channel, outlined against the edema from both.

Shapes are defined in world coordinates (mm) and rasterised at voxel centres, so labels are exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from deepmed.phantoms.ct_cohort import TEST_SEED_OFFSET, ellipsoid

MR_LABELS = {"background": 0, "ventricles": 1, "edema": 2, "lesion": 3}
MR_CHANNELS = ("T1c", "FLAIR")


def _grid(rng: np.random.Generator):
    """Spacing (x, y, z) mm, origin and world coordinates (Z, Y, X arrays) of each voxel centre."""
    in_plane = rng.uniform(0.95, 1.1)
    spacing = np.array([in_plane, in_plane, rng.uniform(1.2, 1.6)])
    extent = np.array([96.0, 112.0, 80.0]) * rng.uniform(0.95, 1.05, size=3)
    size = np.round(extent / spacing).astype(int)
    origin = -extent / 2 + rng.uniform(-5, 5, size=3)
    axes = [origin[i] + spacing[i] * np.arange(size[i]) for i in range(3)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return spacing, origin, (x, y, z)


def _edema(rng, x, y, z, brain) -> tuple[np.ndarray, np.ndarray]:
    """An irregular region (three overlapping ellipsoids) in one hemisphere, and its centre."""
    centre = np.array([rng.choice([-1, 1]) * rng.uniform(14, 22), rng.uniform(-15, 15), rng.uniform(-8, 8)])
    region = np.zeros(x.shape, dtype=bool)
    for _ in range(3):
        offset = rng.normal(scale=4.0, size=3)
        region |= ellipsoid(x, y, z, centre + offset, rng.uniform(7, 12, size=3), rng.uniform(0, np.pi))
    return region & brain, centre


def make_mr_case(seed: int) -> tuple[list[sitk.Image], sitk.Image]:
    """One MR-like case: its channels (T1c, FLAIR; float32) and its label map (MR_LABELS)."""
    rng = np.random.default_rng(seed)
    spacing, origin, (x, y, z) = _grid(rng)
    head = ellipsoid(x, y, z, [0, 0, 0], [44, 52, 38], 0.0)
    brain = ellipsoid(x, y, z, [0, 0, 0], [39, 47, 33], 0.0)
    scalp = head & ~ellipsoid(x, y, z, [0, 0, 0], [42, 50, 36], 0.0)
    tilt = rng.uniform(-0.15, 0.15)
    ventricles = np.zeros(x.shape, dtype=bool)
    for side in (-1, 1):  # lateral ventricles: a thin curved lobe either side of the midline
        bend = 0.012 * (y ** 2)
        ventricles |= ellipsoid(x - side * bend, y, z, [side * rng.uniform(5, 7), rng.uniform(-3, 3),
                                                         rng.uniform(2, 6)],
                                [rng.uniform(2.5, 4.0), rng.uniform(16, 22), rng.uniform(5, 8)], tilt)
    ventricles &= brain
    edema, centre = _edema(rng, x, y, z, brain & ~ventricles)
    lesion = ellipsoid(x, y, z, centre + rng.normal(scale=1.5, size=3), rng.uniform(2.5, 4.5, size=3),
                       rng.uniform(0, np.pi)) & edema
    texture = gaussian_filter(rng.normal(size=x.shape), 2.0)
    grey = brain & (texture > 0.1 * texture.std())  # a grey/white matter patchwork

    channels = []
    contrasts = {  # per channel: tissue, grey matter, CSF, scalp, edema, lesion (relative to white matter)
        "T1c": (1.0, 0.82, 0.30, 1.25, 0.95, rng.uniform(1.25, 1.4)),
        "FLAIR": (1.0, 1.12, 0.25, 0.9, rng.uniform(1.45, 1.6), None)}
    field = gaussian_filter(rng.normal(size=x.shape), 12.0)
    bias = np.exp(0.12 * field / field.std())  # a slow multiplicative field, ~+-12%
    for name in MR_CHANNELS:
        tissue, grey_c, csf, fat, edema_c, lesion_c = contrasts[name]
        image = np.zeros(x.shape)
        image[head] = 0.6
        image[scalp] = fat
        image[brain] = tissue
        image[grey] = grey_c
        image[ventricles] = csf
        image[edema] = edema_c
        image[lesion] = edema_c if lesion_c is None else lesion_c  # FLAIR: the lesion looks like the edema
        image = gaussian_filter(image, 0.5 / spacing[::-1]) * bias
        noise = rng.normal(scale=rng.uniform(0.05, 0.08), size=(2,) + x.shape)
        image = np.hypot(image + noise[0], noise[1])  # Rician magnitude noise
        channels.append(image * rng.uniform(300, 1500))  # arbitrary units, different in each case

    label = np.zeros(x.shape, dtype=np.uint8)
    label[ventricles] = 1
    label[edema] = 2
    label[lesion] = 3
    images = [sitk.GetImageFromArray(c.astype(np.float32)) for c in channels]
    itk_label = sitk.GetImageFromArray(label)
    for img in images + [itk_label]:
        img.SetSpacing(spacing.tolist())
        img.SetOrigin(origin.tolist())
    return images, itk_label


def _write(folder: Path, name: str, seed: int) -> dict:
    images, label = make_mr_case(seed)
    paths = [f"images/{name}_{i:04d}.nii.gz" for i in range(len(images))]
    for image, path in zip(images, paths):
        sitk.WriteImage(image, str(folder / path))
    sitk.WriteImage(label, str(folder / "labels" / f"{name}.nii.gz"))
    return {"id": name, "image": paths, "label": f"labels/{name}.nii.gz"}


def write_mr_cohort(folder: Path, n_cases: int = 24, seed: int = 0, n_test: int = 0) -> Path:
    """Write ``n_cases`` training and ``n_test`` held-out cases (other seeds) as NIfTI plus a manifest
    (held-out cases under ``test``); returns the manifest path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    training = [_write(folder, f"mr_{i:03d}", seed * 1000 + i) for i in range(n_cases)]
    test = [_write(folder, f"mr_test_{i:03d}", TEST_SEED_OFFSET + seed * 1000 + i) for i in range(n_test)]
    manifest = {"name": "synthetic_mr",
                "description": "DeepMed synthetic two-channel MR (ventricles, edema, small enhancing lesion)",
                "channel_names": {str(i): name for i, name in enumerate(MR_CHANNELS)}, "labels": MR_LABELS,
                "training": training, "test": test}
    path = folder / "dataset.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
