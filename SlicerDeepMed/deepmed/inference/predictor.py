"""Load a model directory and predict cases; what a prediction is and how it is written is the application's."""

from __future__ import annotations

import os
from pathlib import Path

from deepmed.applications import Prediction, get_application
from deepmed.errors import DeepMedError
from deepmed.export.onnx_runtime import export_device, onnx_members
from deepmed.export.pipeline import PIPELINE, OnnxPipeline, is_onnx_export
from deepmed.inference.batch import DEFAULT_OPTIONS, BatchResult, CaseJob, cases_in, check_outputs, predict_many
from deepmed.inference.options import InferenceOptions
from deepmed.inference.seg_output import check_dicom_seg_job, wants_dicom_seg, write_seg_prediction
from deepmed.model.card import Mode, check_inputs
from deepmed.model.device import pick_device
from deepmed.model.directory import WEIGHTS, read_card
from deepmed.model.weights import fold_weights, load_weights, split_networks

__all__ = ["CaseJob", "InferenceOptions", "Prediction", "Predictor"]


class Predictor:
    """A trained model ready to run: ``Predictor(model_dir).predict([t1, flair])``; ``model_dir`` may also be an
    ONNX export (``deepmed export --format onnx``), run by onnxruntime on the CPU."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto", expected_app: str | None = None,
                 folds: list[int] | None = None):
        """``folds``: of a cross-validation ensemble, the folds to run (default: all of them, averaged)."""
        self.model_dir = Path(model_dir)
        export = OnnxPipeline.read(self.model_dir) if is_onnx_export(self.model_dir) else None
        self.card = read_card(self.model_dir) if export is None else export.card(str(self.model_dir / PIPELINE))
        self.app = get_application(self.card.application)
        if expected_app is not None and self.app.name != expected_app:
            raise DeepMedError(f"{self.model_dir}: is a {self.app.name} model, expected a {expected_app} model")
        self.device = pick_device(device) if export is None else export_device(device, self.model_dir)
        self.folds = self._choose_folds(folds)
        if export is not None:  # an ONNX export: onnxruntime in place of the torch networks, the rest unchanged
            self.members = onnx_members(export, self.model_dir, self.folds)
            return
        tensors = load_weights(self.model_dir / WEIGHTS)
        self.members = [self._load_member(tensors if fold is None else fold_weights(tensors, fold))
                        for fold in (self.folds or [None])]

    def _choose_folds(self, folds: list[int] | None) -> list[int] | None:
        available = list(self.card.folds) or None
        if folds is None:
            return available
        if not available:
            raise DeepMedError(f"{self.model_dir}: is a single model, not a cross-validation ensemble (--folds)")
        missing = [f for f in folds if f not in available]
        if missing or not folds:
            raise DeepMedError(f"{self.model_dir}: has folds {', '.join(map(str, available))}; "
                               f"got {', '.join(map(str, folds)) or 'none'}")
        return list(folds)

    def _load_member(self, tensors: dict) -> dict:
        networks = self.app.inference_parts(self.card, self.model_dir)
        weights = split_networks(tensors, list(networks))
        for name, network in networks.items():
            try:
                network.load_state_dict(weights[name])
            except RuntimeError as exc:
                raise DeepMedError(f"{self.model_dir / WEIGHTS}: weights do not fit the network in the card "
                                   f"({str(exc).splitlines()[0]})") from None
            network.to(self.device).eval()
        return networks

    @property
    def networks(self) -> dict:
        """The networks of a single model (the first fold's of an ensemble)."""
        return self.members[0]

    @property
    def output_kind(self) -> str:
        return self.card.kind

    @property
    def channel_names(self) -> list[str]:
        return self.card.channel_names

    @property
    def modes(self) -> tuple[Mode, ...]:
        """What the model can be asked for (the card's ``modes``; one ``predict`` mode on images by default)."""
        return self.card.available_modes

    def mode(self, name: str | None = None) -> Mode:
        """The mode called ``name`` (default: the card's first)."""
        return self.card.mode(name, str(self.model_dir))

    def predict(self, inputs, *, tta_flips: bool | None = None, overlap: float | None = None,
                keep_largest: bool | None = None, probabilities: bool = False, uncertainty: bool = False,
                precision: str | None = None,
                mode: str | None = None, condition: list[float] | None = None, steps: int | None = None,
                count: int | None = None, seed: int | None = None, clicks=None, previous=None,
                label: str | None = None) -> Prediction:
        """Run the model on one case (paths or SimpleITK images, one per channel; for a ``pair`` mode two
        cases' images one after the other; none for a generator). Options left at None take the card's
        inference settings. ``uncertainty``: the entropy map alone (``probabilities`` gives both).
        ``mode``, ``condition``, ``steps``, ``count`` and ``seed`` go to the application
        (e.g. an autoencoder's ``interpolate`` mode with ``steps``). An interactive model's ``refine`` mode takes
        ``clicks`` (a ClickSet), ``previous`` (a label map on the input grid) and ``label``."""
        if clicks is not None and mode is None:
            mode = "refine"
        chosen = self.mode(mode)
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]  # one image or path alone
        check_inputs(self.card, chosen, len(inputs), condition, str(self.model_dir))
        options = {"tta_flips": tta_flips, "overlap": overlap, "keep_largest": keep_largest,
                   "probabilities": probabilities, "uncertainty": uncertainty, "precision": precision,
                   "model_name": self.model_dir.name,
                   "model_dir": str(self.model_dir),
                   "folds": self.folds, "mode": chosen.name, "condition": condition, "steps": steps,
                   "count": count, "seed": seed, "clicks": clicks, "previous": previous, "label": label}
        return self.app.predict(self.members, inputs, self.card, self.device, options)

    def predict_many(self, jobs, options: InferenceOptions = DEFAULT_OPTIONS, *, output: Path | None = None,
                     force: bool = False, **batch_options) -> BatchResult:
        """Predict and write a batch. ``jobs``: CaseJob values, or a folder / manifest whose cases go to the
        folder ``output`` (with ``results.csv`` for case-level values). Existing results are refused unless
        ``force``, before any work. Other options: see :func:`deepmed.inference.batch.predict_many`."""
        if isinstance(jobs, (str, os.PathLike)):
            if output is None:
                raise DeepMedError(f"{jobs}: batch inference needs an output folder")
            jobs = cases_in(Path(jobs), Path(output), self.app.output_suffix)
            batch_options.setdefault("table_folder", Path(output))
        jobs = list(jobs)
        mode = self.mode(options.mode)  # an unknown mode is refused before any work
        check_outputs(jobs, force)
        for job in jobs:
            if wants_dicom_seg(job.output):
                check_dicom_seg_job(mode.output_kind, job.inputs, job.output)
        if batch_options.get("dist") is not None:
            batch_options["dist"].barrier()  # every rank checked before any writes
        return predict_many(self, jobs, options, **batch_options)

    def write(self, prediction: Prediction, path: Path, sources: tuple[Path, ...] = ()) -> Path:
        """Write ``prediction`` as the application does; to a ``.dcm`` path, as a DICOM SEG that references the
        DICOM series ``sources`` (the case's input)."""
        if wants_dicom_seg(path):
            return write_seg_prediction(prediction.output, self.card, sources, Path(path), self.model_dir.name)
        return self.app.write_prediction(prediction, Path(path))
