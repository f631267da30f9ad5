"""One refinement: clicks (LPS) + previous label map on the input grid -> the refined label map on the same
grid, computed on the working grid in a region around the clicks and written back into that region only."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from deepmed.applications.inputs import input_channels
from deepmed.errors import DeepMedError
from deepmed.io.clicks import ClickSet
from deepmed.io.geometry import grid_differences
from deepmed.model.card import ModelCard
from deepmed.transforms.guidance import GuidanceSettings, Region, bounding_region, guidance_stack, refine_region
from deepmed.transforms.preprocessing import normalize_image, resample_onto, to_working_grid
from deepmed.volume_inference.sliding import predict_volume

#: Sliding-window overlap of a refinement (and of the automatic mode and validation): the windows are the plan's
#: patch, the field of view the network was trained on. A pass over a larger region (tried: one pass over a 128^3
#: region, ~3x faster) changes what instance normalisation sees and cost 0.05-0.3 Dice at 0 clicks on the CT-like
#: cohort (docs/interactive.md, "Why windows of the training patch"); 0.25 lost the weak lesion's automatic mask.
REFINE_OVERLAP = 0.5
#: Windows per network call.
REFINE_BATCH = 4
#: bf16 autocast on CUDA and on CPUs with native bf16 (1.9x faster on a 128^3 region, the same Dice to 0.001 on
#: the CT-like cohort's click curves); float32 elsewhere.
REFINE_PRECISION = "auto"


@dataclass
class PreparedImage:
    """An input case on the model's working grid, normalised once (a session keeps it between clicks)."""

    reference: sitk.Image          # channel 0: the output's grid
    grid: sitk.Image               # the working grid (geometry only)
    image: np.ndarray              # (C, Z, Y, X) normalised
    cache: dict = field(default_factory=dict)


def prepare_image(inputs, card: ModelCard, model_name: str = "model") -> PreparedImage:
    channels = input_channels(inputs, card, model_name)
    image, _, grid = to_working_grid(channels, None, list(card.spacing), orientation=card.orientation or "LPS")
    methods = [e.normalization for e in card.inputs]
    stats = [e.statistics for e in card.inputs]
    return PreparedImage(channels[0], grid, normalize_image(image, methods, stats))


def click_indices(clicks: ClickSet, prepared: PreparedImage) -> list[tuple[tuple[float, float, float], bool]]:
    """Each click's continuous (z, y, x) index on the working grid and its sign; a click outside the input
    image is a DeepMedError naming it."""
    reference, out = prepared.reference, []
    size = np.asarray(reference.GetSize(), dtype=float)
    for number, click in enumerate(clicks.to_lps().clicks):
        index = np.asarray(reference.TransformPhysicalPointToContinuousIndex(click.point))
        if np.any(index < -0.5) or np.any(index > size - 0.5):
            shown = ", ".join(f"{v:g}" for v in (clicks.clicks[number].point))
            size_text = " x ".join(map(str, reference.GetSize()))
            raise DeepMedError(f"clicks[{number}]: point ({shown}) {clicks.coordinates} lies outside the image "
                               f"(voxel index {', '.join(f'{v:.1f}' for v in index)}; size {size_text})")
        xyz = prepared.grid.TransformPhysicalPointToContinuousIndex(click.point)
        out.append((tuple(float(v) for v in xyz[::-1]), click.positive))
    return out


def check_previous(previous: sitk.Image | None, reference: sitk.Image) -> np.ndarray | None:
    """The previous label map as a (Z, Y, X) array, which must lie on the input's grid."""
    if previous is None:
        return None
    if problems := grid_differences(previous, reference):
        raise DeepMedError(f"previous mask is not on the input image's grid: {'; '.join(problems)}")
    return sitk.GetArrayFromImage(previous)


def _sub_grid(grid: sitk.Image, start_xyz, size_xyz, pixel=sitk.sitkUInt8) -> sitk.Image:
    """An empty image: the box of ``grid`` from ``start_xyz`` with ``size_xyz`` voxels (same spacing, direction)."""
    image = sitk.Image([int(s) for s in size_xyz], pixel)
    image.SetSpacing(grid.GetSpacing())
    image.SetDirection(grid.GetDirection())
    image.SetOrigin(grid.TransformIndexToPhysicalPoint([int(s) for s in start_xyz]))
    return image


def _input_box(region_grid: sitk.Image, reference: sitk.Image) -> tuple[list[int], list[int]]:
    """Start and size (x, y, z) of the input-grid box that holds ``region_grid``'s physical box."""
    size = np.asarray(region_grid.GetSize())
    corners = [region_grid.TransformContinuousIndexToPhysicalPoint([float(c) for c in (np.array(bits) * size - 0.5)])
               for bits in np.ndindex(2, 2, 2)]
    indices = np.array([reference.TransformPhysicalPointToContinuousIndex(c) for c in corners])
    low = np.clip(np.floor(indices.min(axis=0)).astype(int), 0, np.asarray(reference.GetSize()) - 1)
    high = np.clip(np.ceil(indices.max(axis=0)).astype(int) + 1, 1, np.asarray(reference.GetSize()))
    return low.tolist(), (high - low).tolist()


def label_probability(networks, image: np.ndarray, planes: np.ndarray, channel: int, patch_xyz, device,
                      overlap: float = REFINE_OVERLAP) -> np.ndarray:
    """Output ``channel``'s probability (Z, Y, X) of the image (C, Z, Y, X) with its guidance planes, averaged
    over networks: a sliding window of the plan's patch (the training field of view)."""
    tensor = torch.from_numpy(np.concatenate([image, planes]))[None]
    total = None
    for network in networks:
        probability = predict_volume(network, tensor, list(reversed(patch_xyz)), overlap=overlap,
                                     activation=lambda logits: torch.softmax(logits.float(), dim=1)[:, [channel]],
                                     sw_batch_size=REFINE_BATCH, precision=REFINE_PRECISION,
                                     device=device)[0, 0].numpy()
        total = probability if total is None else total + probability
    return total / len(networks)


def foreground_probability(networks, prepared: PreparedImage, settings: GuidanceSettings, clicks, previous_mask,
                           label: str, patch_xyz, device, region: Region, overlap: float = REFINE_OVERLAP
                           ) -> np.ndarray:
    """The refined label's probability (Z, Y, X) over ``region`` of the working grid, averaged over networks."""
    spacing_zyx = tuple(prepared.grid.GetSpacing()[::-1])
    shift = np.asarray(region.start, dtype=float)
    positive = [np.asarray(p) - shift for p, sign in clicks if sign]
    negative = [np.asarray(p) - shift for p, sign in clicks if not sign]
    channel = settings.labels.index(label) + 1  # the label's output channel (and its guidance channels)
    planes = guidance_stack(region.size, positive, negative, previous_mask, channel, len(settings.labels),
                            spacing_zyx, settings.sigma_mm)
    return label_probability(networks, prepared.image[(slice(None), *region.slices)], planes, channel, patch_xyz,
                             device, overlap)


def refine_labels(networks, prepared: PreparedImage, card: ModelCard, clicks: ClickSet, previous: np.ndarray | None,
                  label: str, device) -> tuple[np.ndarray, Region, tuple[list[int], list[int]]]:
    """The label map (Z, Y, X, input grid) with ``label`` refined by ``clicks`` in a region around them (the
    whole image without clicks); elsewhere ``previous`` unchanged. Also the working-grid region and the
    input-grid box (start, size, x y z) that were computed."""
    settings = GuidanceSettings.of(card)
    value = {entry.name: entry.value for entry in card.labels}[label]
    points = click_indices(clicks, prepared)
    shape = prepared.image.shape[1:]
    reference = prepared.reference
    mine = None if previous is None else previous == value
    also = None
    if mine is not None and mine.any() and points:
        also = _working_box(bounding_region(mine), reference, prepared.grid, shape)
    patch = list(card.patch_size)
    size_zyx = [max(r, p) for r, p in zip(settings.region_size[::-1], patch[::-1])]
    region = refine_region(shape, [p for p, _ in points], size_zyx, [8, 8, 8], also)
    region_grid = _sub_grid(prepared.grid, region.start[::-1], region.size[::-1])
    previous_mask = None
    if mine is not None:
        as_image = sitk.GetImageFromArray(mine.astype(np.uint8))
        as_image.CopyInformation(reference)
        previous_mask = sitk.GetArrayFromImage(resample_onto(as_image, region_grid, sitk.sitkNearestNeighbor,
                                                             sitk.sitkUInt8)).astype(np.float32)
    probability = foreground_probability(networks, prepared, settings, points, previous_mask, label, patch, device,
                                         region)
    start, size = _input_box(region_grid, reference)
    on_region = sitk.GetImageFromArray(probability.astype(np.float32))
    on_region.CopyInformation(region_grid)
    target = _sub_grid(reference, start, size)
    back = sitk.GetArrayFromImage(sitk.Resample(on_region, target, sitk.Transform(), sitk.sitkLinear, -1.0,
                                                sitk.sitkFloat32))
    if previous is None:
        labels = np.zeros(shape=reference.GetSize()[::-1], dtype=np.uint8)
    else:  # a copy, in the smallest unsigned type that holds the label values
        labels = previous.astype(np.uint8 if max(int(previous.max()), value) <= 255 else np.uint16)
    box = tuple(slice(a, a + n) for a, n in zip(start[::-1], size[::-1]))
    inside, sub = back >= 0, labels[box]
    sub[inside & (back > 0.5)] = value
    sub[inside & (back <= 0.5) & (sub == value)] = 0
    return labels, region, (start, size)


def _working_box(box: Region, reference: sitk.Image, grid: sitk.Image, shape) -> Region:
    """An input-grid box (z, y, x) as the working-grid box that holds it."""
    corners = [[(box.start[2 - a] if bit == 0 else box.stop[2 - a] - 1) for a, bit in enumerate(bits)]
               for bits in np.ndindex(2, 2, 2)]
    indices = np.array([grid.TransformPhysicalPointToContinuousIndex(reference.TransformIndexToPhysicalPoint(c))
                        for c in corners])[:, ::-1]
    low = np.clip(np.floor(indices.min(axis=0)).astype(int), 0, np.asarray(shape) - 1)
    high = np.clip(np.ceil(indices.max(axis=0)).astype(int) + 1, 1, np.asarray(shape))
    return Region(tuple(int(v) for v in low), tuple(int(v) for v in high))


def read_previous(previous) -> sitk.Image | None:
    """A previous label map given as a path or an image (None stays None)."""
    if previous is None or isinstance(previous, sitk.Image):
        return previous
    from deepmed.io.image_io import read_image

    return read_image(previous)


def chosen_label(card: ModelCard, clicks: ClickSet, label: str | None) -> str:
    """The label a refinement works on: ``label``, else the clicks' (one label per call); DeepMedError for a
    label the model does not segment or clicks of several labels."""
    known = [entry.name for entry in card.foreground_labels]
    clicked = clicks.labels
    if label is None:
        if len(clicked) > 1:
            raise DeepMedError(f"clicks: one label per refinement, got clicks for {', '.join(clicked)} "
                               "(choose one with --label)")
        if not clicked:
            raise DeepMedError(f"clicks: no clicks and no label to refine (labels: {', '.join(known)})")
        label = clicked[0]
    for name in (label, *clicked):
        if name not in known:
            raise DeepMedError(f"clicks: label '{name}' is not one of the model's labels ({', '.join(known)})")
    if any(name != label for name in clicked):
        raise DeepMedError(f"clicks: label '{label}' was asked for, the clicks name {', '.join(clicked)}")
    return label


def automatic_labels(networks, prepared: PreparedImage, card: ModelCard, device) -> np.ndarray:
    """Every label without clicks on the whole image: each label's probability on the input grid; a voxel
    takes the most probable label above 0.5, else background."""
    from deepmed.volume_inference.ongrid import back_to_input

    settings = GuidanceSettings.of(card)
    whole = Region((0, 0, 0), tuple(int(s) for s in prepared.image.shape[1:]))
    values = {entry.name: entry.value for entry in card.labels}
    best = np.full(prepared.reference.GetSize()[::-1], 0.5, dtype=np.float32)
    labels = np.zeros(best.shape, dtype=np.uint8)
    for name in settings.labels:
        probability = foreground_probability(networks, prepared, settings, [], None, name, list(card.patch_size),
                                             device, whole)
        on_input = back_to_input(probability, prepared.grid, prepared.reference)
        better = on_input > best
        labels[better], best[better] = values[name], on_input[better]
    return labels
