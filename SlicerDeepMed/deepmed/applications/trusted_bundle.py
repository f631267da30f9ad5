"""A trusted MONAI bundle (imported with ``--trust-code``) run by MONAI's own config machinery.

MONAI's ``ConfigParser`` builds the bundle's preprocessing, network, inferer and postprocessing from the
model directory's ``bundle/`` (its configs and ``scripts/``, on ``sys.path`` only while they are built and
run), and the case goes through them as the bundle's ``SupervisedEvaluator`` would take it: the input files
read by the bundle's own ``LoadImaged``, collated, inferred without gradients, decollated, the batch and the
output merged and postprocessed (``engine_apply_transform``). Before any of its code runs, the model
directory's files must match the ``SHA256SUMS`` written when the user trusted it. The result is placed on
the first input's exact grid and written by the engine's writers, like every ``monai_bundle`` model.

This runs in the engine's process (``deepmed infer``, started by Slicer as a worker), never in Slicer's.
"""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from deepmed.applications.base import APPLICATIONS, Prediction
from deepmed.applications.monai_bundle import MASKS, MonaiBundleApplication, masks_image
from deepmed.errors import DeepMedError

APPLICATION = "monai_bundle_trusted"


def _check_untouched(model_dir: Path) -> None:
    from deepmed.zoo.checksums import verify_sums

    problems = verify_sums(model_dir)
    if problems:
        raise DeepMedError(f"{model_dir}: a trusted model's files changed since they were trusted at import "
                           f"({problems[0]}); import the bundle again")


def _input_files(inputs: list, folder: Path) -> list[str]:
    """Paths MONAI's LoadImaged reads: the given files, or in-memory images written as NIfTI."""
    files = []
    for index, item in enumerate(inputs):
        if isinstance(item, sitk.Image):
            path = folder / f"input_{index}.nii.gz"
            sitk.WriteImage(item, str(path))
            item = path
        path = Path(item)
        if not path.is_file():
            raise DeepMedError(f"{path}: input image not found")
        files.append(str(path))
    return files


def _apply_postprocessing(postprocessing, batch: dict, output: dict) -> dict:
    """MONAI's ``engine_apply_transform``: the decollated batch and output merged, then postprocessed."""
    data = dict(batch)
    data.update(output)
    from monai.transforms import apply_transform

    return apply_transform(postprocessing, data)


@APPLICATIONS.register(APPLICATION, "a trusted MONAI bundle: its own code run by MONAI's config machinery")
class TrustedBundleApplication(MonaiBundleApplication):
    name = APPLICATION

    def inference_parts(self, card):
        raise DeepMedError("a trusted MONAI bundle is built from its model directory (Predictor does this)")

    def inference_parts_in(self, model_dir: Path, card: dict) -> dict:
        """The bundle's network, built by MONAI from ``model_dir/bundle`` (weights loaded after)."""
        from deepmed.zoo.trusted_bundle import BUNDLE_FOLDER, built, bundle_code, trusted_parser

        _check_untouched(model_dir)
        bundle_dir = Path(model_dir) / BUNDLE_FOLDER
        with bundle_code(bundle_dir):
            parser = trusted_parser(bundle_dir, card["task"].get("values", {}), torch.device("cpu"))
            return {"model": built(parser, "network_def", str(model_dir))}

    def predict(self, members, inputs, card, device, options):
        from monai.data import decollate_batch, list_data_collate
        from monai.transforms import Invertd

        from deepmed.zoo.trusted_bundle import BUNDLE_FOLDER, built, bundle_code, trusted_parser

        task, model_dir = card["task"], Path(options["model_dir"])
        keys, image_key, pred_key = task["input_keys"], task["image_key"], task["pred_key"]
        bundle_dir = model_dir / BUNDLE_FOLDER
        with tempfile.TemporaryDirectory(prefix="deepmed-bundle-") as temporary, bundle_code(bundle_dir):
            files = _input_files(inputs, Path(temporary))
            reference = sitk.ReadImage(files[0])
            entries = {key: path for key, path in zip(keys, files)} if len(keys) > 1 else \
                {keys[0]: files[0] if len(files) == 1 else files}
            parser = trusted_parser(bundle_dir, task.get("values", {}), device)
            preprocessing, inferer, postprocessing = (built(parser, key, str(model_dir))
                                                      for key in ("preprocessing", "inferer", "postprocessing"))
            for transform in getattr(preprocessing, "transforms", []):  # label entries are not given
                if type(transform).__name__ == "LoadImaged":
                    transform.allow_missing_keys = True
            batch = list_data_collate([preprocessing(entries)])
            images = batch[image_key].to(device)
            amp = torch.autocast("cuda") if task.get("amp") and device.type == "cuda" else nullcontext()
            with torch.no_grad(), amp:
                outputs = [inferer(images, member["model"]) for member in members]
            output = {image_key: images, pred_key: outputs[0] if len(outputs) == 1 else sum(outputs) / len(outputs)}
            item = _apply_postprocessing(postprocessing, decollate_batch(batch, detach=True)[0],
                                         decollate_batch(output, detach=True)[0])
            pred = item[pred_key]
            if tuple(pred.shape[1:]) != reference.GetSize():  # spatial steps the bundle left uninverted
                pred = Invertd(keys=pred_key, transform=preprocessing, orig_keys=keys[0],
                               nearest_interp=True)(item)[pred_key]
        return self._on_grid(torch.as_tensor(pred).detach().cpu().numpy(), reference, card, options)

    @staticmethod
    def _on_grid(pred: np.ndarray, reference: sitk.Image, card: dict, options: dict) -> Prediction:
        name = options.get("model_name", "model")
        if tuple(pred.shape[1:]) != reference.GetSize():
            raise DeepMedError(f"model {name}: the bundle's output grid {tuple(pred.shape[1:])} does not invert "
                               f"onto the input's {reference.GetSize()}")
        array = pred.transpose(0, 3, 2, 1)  # (channel, z, y, x) as SimpleITK
        if card.get("output_kind") == MASKS:
            return Prediction(masks_image(array != 0, card["labels"], reference))
        if array.shape[0] != 1:
            raise DeepMedError(f"model {name}: the bundle's postprocessing gives {array.shape[0]} channels where "
                               "its card expects one label map")
        values = np.rint(array[0])
        image = sitk.GetImageFromArray(values.astype(np.uint16 if values.max(initial=0) > 255 else np.uint8))
        image.CopyInformation(reference)
        return Prediction(image)
