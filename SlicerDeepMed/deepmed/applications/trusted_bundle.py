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

import re
import sys
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from deepmed.applications.base import APPLICATIONS, Prediction
from deepmed.applications.monai_bundle import MASKS, MonaiBundleApplication, masks_image
from deepmed.errors import DeepMedError

APPLICATION = "monai_bundle_trusted"
BUNDLE_FOLDER = "bundle"  # the bundle's configs/ and scripts/ in a trusted model's directory
WRITERS = ("SaveImaged", "SaveImage")  # left out: the engine writes the result
LABEL_KEYS = re.compile(r"label|seg|mask|^gt$", re.IGNORECASE)


def is_writer(node) -> bool:
    """A config entry that instantiates a writing transform."""
    return isinstance(node, dict) and str(node.get("_target_", "")).rsplit(".", 1)[-1] in WRITERS


# ---- the bundle's own pipeline, built by MONAI -------------------------------------------------------------------
@contextmanager
def bundle_code(bundle_dir: Path):
    """``bundle_dir`` first on ``sys.path`` (its ``scripts`` package importable) while the block runs; every
    bundle calls its package ``scripts``, so one loaded earlier from another folder is forgotten first."""
    for name in [n for n in sys.modules if n == "scripts" or n.startswith("scripts.")]:
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if not Path(origin).resolve().is_relative_to(bundle_dir.resolve()):
            del sys.modules[name]
    sys.path.insert(0, str(bundle_dir))
    try:
        yield
    finally:
        try:
            sys.path.remove(str(bundle_dir))
        except ValueError:
            pass


def trusted_parser(bundle_dir: Path, config: Path, values: dict, device):
    """MONAI's ``ConfigParser`` on the bundle's inference config, with the engine's device, ``bundle_root``
    at ``bundle_dir``, the inference ``config`` file, the user's ``--set`` values and no writing steps."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(bundle_dir)
    parser["device"] = device
    for key, value in values.items():
        parser[key] = value
    for key in ("preprocessing", "postprocessing"):
        raw = parser.get(key)
        steps = raw.get("transforms") if isinstance(raw, dict) else raw
        if isinstance(steps, list):
            kept = [step for step in steps if not is_writer(step)]
            parser[f"{key}#transforms" if isinstance(raw, dict) else key] = kept
    return parser


def built(parser, key: str, where: str):
    """``parser.get_parsed_content(key)``; a failure of the bundle's own code in one line naming the key."""
    try:
        return parser.get_parsed_content(key)
    except Exception as exc:  # the bundle's code may raise anything; the user gets one line, not a traceback
        cause = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        message = str(cause).strip().splitlines()[0][:200] if str(cause).strip() else type(cause).__name__
        raise DeepMedError(f"{where}: building the bundle's {key} failed: {type(cause).__name__}: {message}") from None


def input_keys(preprocessing) -> list[str]:
    """The entries the bundle's ``LoadImaged`` steps read, less labels (not needed to infer)."""
    from monai.transforms import LoadImaged

    keys = [k for t in getattr(preprocessing, "transforms", []) if isinstance(t, LoadImaged) for k in t.keys]
    return [k for k in dict.fromkeys(keys) if not LABEL_KEYS.search(str(k))]




def _check_untouched(model_dir: Path) -> None:
    """The files listed in ``SHA256SUMS`` at import (the code the user trusted) unchanged, and no file added
    under ``bundle/``."""
    import hashlib

    sums = model_dir / "SHA256SUMS"
    listed = dict(reversed(line.split("  ", 1)) for line in sums.read_text(encoding="utf-8").splitlines()
                  if "  " in line) if sums.is_file() else {}
    present = {p.relative_to(model_dir).as_posix() for p in (model_dir / BUNDLE_FOLDER).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    changed = sorted(present - set(listed)) + [name for name, digest in listed.items()
                                               if not (model_dir / name).is_file() or hashlib.sha256(
                                                   (model_dir / name).read_bytes()).hexdigest() != digest]
    if not listed or changed or not present:
        what = changed[0] if changed else "SHA256SUMS missing" if not listed else f"no {BUNDLE_FOLDER}/ folder"
        raise DeepMedError(f"{model_dir}: a trusted model's files changed since they were trusted at import "
                           f"({what}); import the bundle again")


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

    def inference_parts(self, card, model_dir):
        """The bundle's network, built by MONAI from ``model_dir/bundle`` (weights loaded after)."""
        _check_untouched(model_dir)
        bundle_dir = Path(model_dir) / BUNDLE_FOLDER
        with bundle_code(bundle_dir):
            task = card.task
            parser = trusted_parser(bundle_dir, Path(model_dir) / task["config"], task.get("values", {}),
                                    torch.device("cpu"))
            return {"model": built(parser, "network_def", str(model_dir))}

    def predict(self, members, inputs, card, device, options):
        from monai.data import decollate_batch, list_data_collate
        from monai.transforms import Invertd

        task, model_dir = card.task, Path(options["model_dir"])
        keys, image_key, pred_key = task["input_keys"], task["image_key"], task["pred_key"]
        bundle_dir = model_dir / BUNDLE_FOLDER
        with tempfile.TemporaryDirectory(prefix="deepmed-bundle-") as temporary, bundle_code(bundle_dir):
            files = _input_files(inputs, Path(temporary))
            reference = sitk.ReadImage(files[0])
            entries = {key: path for key, path in zip(keys, files)} if len(keys) > 1 else \
                {keys[0]: files[0] if len(files) == 1 else files}
            refined = self._click_entries(card, reference, options)
            entries.update(refined[1] if refined else {})
            parser = trusted_parser(bundle_dir, model_dir / task["config"], task.get("values", {}), device)
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
        prediction = self._on_grid(torch.as_tensor(pred).detach().cpu().numpy(), reference, card, options)
        if refined is None or options.get("previous") is None:
            return prediction
        return self._merged(prediction, refined[0], reference, card, options)

    @staticmethod
    def _click_entries(card, reference: sitk.Image, options: dict) -> tuple[str, dict] | None:
        """The refined label and the bundle's click entries, when the card takes clicks and clicks (or a label)
        were given; None otherwise (the bundle's automatic mode)."""
        from deepmed.applications.bundle_clicks import BundleClicks, click_entries
        from deepmed.applications.interactive_refine import chosen_label
        from deepmed.io.clicks import ClickSet

        clicks, prompt = options.get("clicks") or ClickSet(), BundleClicks.of(card.task)
        if prompt is None and clicks.clicks:
            raise DeepMedError(f"model {options.get('model_name', 'model')}: this bundle takes no clicks")
        if prompt is None or not (clicks.clicks or options.get("label")):
            return None
        label = chosen_label(card, clicks, options.get("label"))
        return label, click_entries(clicks, reference, label, prompt)

    @staticmethod
    def _merged(prediction: Prediction, label: str, reference: sitk.Image, card, options: dict) -> Prediction:
        """The previous label map with the refined label from the bundle's output (the others kept)."""
        from deepmed.applications.bundle_clicks import merge_refined
        from deepmed.applications.interactive_refine import check_previous, read_previous

        previous = check_previous(read_previous(options["previous"]), reference)
        value = {entry.name: entry.value for entry in card.labels}[label]
        merged = merge_refined(sitk.GetArrayFromImage(prediction.output), previous, value)
        image = sitk.GetImageFromArray(merged)
        image.CopyInformation(reference)
        return Prediction(image)

    @staticmethod
    def _on_grid(pred: np.ndarray, reference: sitk.Image, card: dict, options: dict) -> Prediction:
        name = options.get("model_name", "model")
        if tuple(pred.shape[1:]) != reference.GetSize():
            raise DeepMedError(f"model {name}: the bundle's output grid {tuple(pred.shape[1:])} does not invert "
                               f"onto the input's {reference.GetSize()}")
        array = pred.transpose(0, 3, 2, 1)  # (channel, z, y, x) as SimpleITK
        if card.output_kind == MASKS:
            return Prediction(masks_image(array != 0, card.label_dicts(), reference))
        if array.shape[0] != 1:
            raise DeepMedError(f"model {name}: the bundle's postprocessing gives {array.shape[0]} channels where "
                               "its card expects one label map")
        values = np.rint(array[0])
        image = sitk.GetImageFromArray(values.astype(np.uint16 if values.max(initial=0) > 255 else np.uint8))
        image.CopyInformation(reference)
        return Prediction(image)
