"""An imported MONAI bundle run as the bundle runs itself: its own MONAI transforms, inferer and postprocessing.

The card's ``task`` section keeps the bundle's pipeline as data (``deepmed.zoo.bundle`` writes it):
``image_key``, ``loader`` (LoadImaged's ``ensure_channel_first``), ``preprocessing``, ``inferer`` and
``postprocessing`` steps (MONAI class names with literal arguments, see ``bundle_steps``). ``predict``
hands the input channels to that pipeline as MONAI's image readers would (array in (x, y, z) order, RAS
affine, channels stacked first), so the results are MONAI's own; spatial steps are inverted (the bundle's
``Invertd``, or one added with nearest interpolation when the bundle has none) and the result is placed on
the input's exact grid. A final single channel is a label map; several channels are overlapping binary masks
(``output_kind: overlapping_masks``), written as a Slicer ``.seg.nrrd`` or one mask file per label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from deepmed.applications.base import APPLICATIONS, Prediction, RunnableApplication
from deepmed.applications.bundle_steps import APPLICATION, build_inferer, build_transform
from deepmed.applications.dense import DenseApplication
from deepmed.errors import DeepMedError
from deepmed.io.image_io import write_image
from deepmed.networks import build_network

PRED = "pred"  # the key MONAI's evaluators give the network output
MASKS = "overlapping_masks"


def ras_affine(image: sitk.Image) -> np.ndarray:
    """The voxel (x, y, z index) -> RAS world matrix MONAI's readers put in ``affine``."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    affine[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def as_loaded(channels: list[sitk.Image], ensure_channel_first: bool):
    """The MetaTensor MONAI's LoadImage gives for these channels' files (one file: no channel axis;
    several: stacked first), float32 like its NIfTI reader."""
    from monai.data import MetaTensor
    from monai.transforms import EnsureChannelFirst

    arrays = [sitk.GetArrayViewFromImage(c).transpose(2, 1, 0).astype(np.float32) for c in channels]
    affine = ras_affine(channels[0])
    meta = {"affine": affine, "original_affine": affine.copy(), "spatial_shape": np.asarray(channels[0].GetSize()),
            "space": "RAS", "original_channel_dim": float("nan") if len(arrays) == 1 else 0,
            "filename_or_obj": "input"}
    array = arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=0)
    image = MetaTensor.ensure_torch_and_prune_meta(array, meta)
    return EnsureChannelFirst()(image, meta_dict=meta) if ensure_channel_first else image


@APPLICATIONS.register(APPLICATION, "an imported MONAI bundle: its own transforms, inferer and postprocessing")
class MonaiBundleApplication(RunnableApplication):
    """Runs an imported MONAI bundle; it is fine-tuned, if at all, as the application its card's
    ``trainable_as`` names (``training.init``)."""

    name = APPLICATION
    output_kind = "label_map"
    instead = ("fine-tune the imported model with an application its card's trainable_as names "
               "(deepmed train --app segmentation --init MODEL_OR_ID ...)")

    def inference_parts(self, card, model_dir):
        return {"model": build_network(card.network.name, card.network.args)}

    def predict(self, members, inputs, card, device, options):
        from monai.data import decollate_batch, list_data_collate
        from monai.transforms import Compose, Invertd

        task = card.task
        key = task["image_key"]
        channels = DenseApplication._channels(inputs, card, options.get("model_name", "model"))
        reference = channels[0]
        preprocessing = Compose([build_transform(step) for step in task["preprocessing"]])
        data = preprocessing({key: as_loaded(channels, task["loader"].get("ensure_channel_first", False))})
        del channels
        inferer = build_inferer(task["inferer"])
        batch = list_data_collate([data])
        with torch.no_grad():
            outputs = [inferer(batch[key].to(device), member["model"]).detach().cpu() for member in members]
        output = {key: batch[key], PRED: outputs[0] if len(outputs) == 1 else sum(outputs) / len(outputs)}
        item = decollate_batch(output)[0]  # as MONAI's evaluators hand each case to the postprocessing
        post = [build_transform(step, preprocessing) for step in task["postprocessing"]]
        for transform in post:
            item = transform(item)
        pred = item[PRED]
        if tuple(pred.shape[1:]) != reference.GetSize():  # spatial steps the bundle left uninverted
            item = Invertd(keys=PRED, transform=preprocessing, orig_keys=key, nearest_interp=True)(item)
            pred = item[PRED]
        if tuple(pred.shape[1:]) != reference.GetSize():
            raise DeepMedError(f"model {options.get('model_name', 'model')}: the bundle's output grid "
                               f"{tuple(pred.shape[1:])} does not invert onto the input's {reference.GetSize()}")
        array = torch.as_tensor(pred).numpy().transpose(0, 3, 2, 1)  # (channel, z, y, x) as SimpleITK
        if card.output_kind == MASKS:
            return Prediction(masks_image(array != 0, card.label_dicts(), reference))
        values = np.rint(array[0])
        image = sitk.GetImageFromArray(values.astype(np.uint16 if values.max(initial=0) > 255 else np.uint8))
        image.CopyInformation(reference)
        return Prediction(image)

    def write_prediction(self, prediction, path):
        path = Path(path)
        if prediction.output.GetNumberOfComponentsPerPixel() == 1:
            return write_image(prediction.output, path, label=True)
        return write_masks(prediction.output, path)


def masks_image(masks: np.ndarray, labels: list[dict], reference: sitk.Image) -> sitk.Image:
    """Binary masks (label, z, y, x) -> a vector image on ``reference``'s grid, one component per label, that
    carries Slicer's segmentation fields (a layer per segment: segments may overlap)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(masks.astype(np.uint8), 0, -1)), isVector=True)
    image.CopyInformation(reference)
    size = image.GetSize()
    image.SetMetaData("Segmentation_MasterRepresentation", "Binary labelmap")
    image.SetMetaData("Segmentation_ContainedRepresentationNames", "Binary labelmap|")
    for index, label in enumerate(labels):
        colour = " ".join(f"{c / 255:.4f}" for c in label.get("color", [128, 128, 128]))
        for field, value in (("ID", f"Segment_{label['value']}"), ("Name", label["name"]), ("Layer", str(index)),
                             ("LabelValue", "1"), ("Color", colour), ("NameAutoGenerated", "0"),
                             ("ColorAutoGenerated", "0"),
                             ("Extent", f"0 {size[0] - 1} 0 {size[1] - 1} 0 {size[2] - 1}")):
            image.SetMetaData(f"Segment{index}_{field}", value)
    return image


def mask_names(image: sitk.Image) -> list[str]:
    return [image.GetMetaData(f"Segment{i}_Name") if image.HasMetaDataKey(f"Segment{i}_Name") else f"label_{i + 1}"
            for i in range(image.GetNumberOfComponentsPerPixel())]


def write_masks(image: sitk.Image, path: Path) -> Path:
    """Overlapping masks: ``.seg.nrrd`` -> one Slicer segmentation file (a layer per segment); any other
    ending -> one label map per mask beside it, ``NAME_<label>.nii.gz``."""
    if path.name.lower().endswith(".seg.nrrd"):
        return write_image(image, path)
    stem = path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem
    suffix = path.name[len(stem):] or ".nii.gz"
    for index, name in enumerate(mask_names(image)):
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        write_image(sitk.VectorIndexSelectionCast(image, index), path.with_name(f"{stem}_{safe}{suffix}"), label=True)
    return path
