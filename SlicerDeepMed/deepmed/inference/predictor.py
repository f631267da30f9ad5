"""Load a model directory and predict cases; what a prediction is and how it is written is the application's."""

from __future__ import annotations

import os
from pathlib import Path

from deepmed.applications import Prediction, get_application
from deepmed.errors import DeepMedError
from deepmed.model.device import pick_device
from deepmed.model.directory import WEIGHTS, read_card
from deepmed.model.weights import fold_weights, load_weights, split_networks

__all__ = ["Prediction", "Predictor"]


class Predictor:
    """A trained model ready to run: ``Predictor(model_dir).predict([t1, flair])``."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto", expected_app: str | None = None,
                 folds: list[int] | None = None):
        """``folds``: of a cross-validation ensemble, the folds to run (default: all of them, averaged)."""
        self.model_dir = Path(model_dir)
        self.card = read_card(self.model_dir)
        self.app = get_application(self.card["application"])
        if expected_app is not None and self.app.name != expected_app:
            raise DeepMedError(f"{self.model_dir}: is a {self.app.name} model, expected a {expected_app} model")
        self.device = pick_device(device)
        self.folds = self._choose_folds(folds)
        tensors = load_weights(self.model_dir / WEIGHTS)
        self.members = [self._load_member(tensors if fold is None else fold_weights(tensors, fold))
                        for fold in (self.folds or [None])]

    def _choose_folds(self, folds: list[int] | None) -> list[int] | None:
        available = self.card.get("folds")
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
        networks = self.app.inference_parts(self.card)
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
        return self.card.get("output_kind", self.app.output_kind)

    @property
    def channel_names(self) -> list[str]:
        return [entry["name"] for entry in self.card["inputs"]]

    def predict(self, inputs, *, tta_flips: bool | None = None, overlap: float | None = None,
                keep_largest: bool | None = None, probabilities: bool = False, precision: str | None = None
                ) -> Prediction:
        """Run the model on one case (paths or SimpleITK images, one per channel). Options left at None take
        the card's inference settings."""
        options = {"tta_flips": tta_flips, "overlap": overlap, "keep_largest": keep_largest,
                   "probabilities": probabilities, "precision": precision, "model_name": self.model_dir.name,
                   "folds": self.folds}
        return self.app.predict(self.members, inputs, self.card, self.device, options)

    def write(self, prediction: Prediction, path: Path) -> Path:
        return self.app.write_prediction(prediction, Path(path))
