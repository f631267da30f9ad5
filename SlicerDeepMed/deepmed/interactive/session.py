"""A warm interactive model: loaded once, it refines a label click after click (the Slicer worker holds one)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from deepmed.applications import interactive_refine as refine
from deepmed.errors import DeepMedError
from deepmed.interactive.clicks import ClickSet
from deepmed.io.geometry import grid_differences
from deepmed.volume_inference.ongrid import image_like


@dataclass
class RefineResult:
    """One refinement: the label map on the input's exact grid, the label refined, the time it took and
    the input-grid region (index start and size, x y z) that was computed."""

    labels: sitk.Image
    label: str
    seconds: float
    region: tuple[tuple[int, int, int], tuple[int, int, int]]


class InteractiveSession:
    """Loads an interactive model once and refines masks click after click (the warm worker holds one)."""

    def __init__(self, model, device: str = "cpu", library=None):
        """``model``: a model directory or the id of a model in the library."""
        from deepmed.inference.predictor import Predictor
        from deepmed.zoo.library import resolve_model

        self.predictor = Predictor(resolve_model(model, library), device)
        if "refine" not in {mode.name for mode in self.predictor.modes}:
            raise DeepMedError(f"{self.predictor.model_dir}: is a {self.predictor.app.name} model, not an "
                               "interactive one (its card has no 'refine' mode)")
        self._cached_key: object = None
        self._cached: refine.PreparedImage | None = None
        self.images_prepared = 0  # how many times an image was read and put on the working grid

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels the model refines (foreground label names of its card)."""
        return tuple(entry.name for entry in self.predictor.card.foreground_labels)

    def refine(self, image, clicks: ClickSet, previous=None, label: str | None = None) -> RefineResult:
        """``image``: a path, an image or a list of them (channels); ``previous``: a label map (path or image)
        on the image's grid, or None; ``label``: the label to refine (default: the clicks' label). Without
        clicks the label is segmented automatically (on the whole image)."""
        started = time.perf_counter()
        if not self.prepares:
            return self._refine_by_predictor(image, clicks, previous, label, started)
        prepared = self._prepare(image)
        card = self.predictor.card
        chosen = refine.chosen_label(card, clicks, label)
        previous_array = refine.check_previous(refine.read_previous(previous), prepared.reference)
        networks = [member["model"] for member in self.predictor.members]
        labels, _, (start, size) = refine.refine_labels(networks, prepared, card, clicks, previous_array, chosen,
                                                        self.predictor.device)
        output = image_like(labels, prepared.reference)
        return RefineResult(output, chosen, time.perf_counter() - started,
                            (tuple(int(v) for v in start), tuple(int(v) for v in size)))

    @property
    def prepares(self) -> bool:
        """Whether the model's application keeps the image prepared between clicks (deepmed's interactive models);
        another model with a ``refine`` mode (a trusted DeepEdit bundle) runs its own pipeline on every click."""
        return hasattr(self.predictor.app, "predict_prepared")

    def _refine_by_predictor(self, image, clicks: ClickSet, previous, label, started: float) -> RefineResult:
        """The model's own ``refine`` mode on the whole image (the image read once per call)."""
        chosen = refine.chosen_label(self.predictor.card, clicks, label)
        items = image if isinstance(image, (list, tuple)) else [image]
        images = [item if isinstance(item, sitk.Image) else sitk.ReadImage(str(item)) for item in items]
        self.images_prepared += 1
        prediction = self.predictor.predict(images, mode="refine", clicks=clicks, previous=previous, label=chosen)
        output = prediction.output
        if problems := grid_differences(output, images[0]):
            raise DeepMedError(f"{self.predictor.model_dir}: the refined label map is not on the image's grid: "
                               f"{'; '.join(problems)}")
        output.CopyInformation(images[0])  # the input's exact geometry (a file written for the bundle rounds it)
        return RefineResult(output, chosen, time.perf_counter() - started,
                            ((0, 0, 0), tuple(int(v) for v in images[0].GetSize())))

    def _prepare(self, image) -> refine.PreparedImage:
        key = self._key(image)
        if key is None or key != self._cached_key:
            self._cached = refine.prepare_image(image, self.predictor.card, self.predictor.model_dir.name)
            self._cached_key = key
            self.images_prepared += 1
        return self._cached

    @staticmethod
    def _key(image) -> object:
        """What identifies an input between calls: paths with their modification times, image objects by id
        (the same object is the same image); None when unknown (always re-read)."""
        items = image if isinstance(image, (list, tuple)) else [image]
        key = []
        for item in items:
            if isinstance(item, sitk.Image):
                key.append(("image", id(item)))
            elif isinstance(item, (str, os.PathLike)):
                path = Path(item)
                try:
                    key.append(("path", str(path.resolve()), path.stat().st_mtime_ns))
                except OSError:
                    return None
            else:
                return None
        return tuple(key)
