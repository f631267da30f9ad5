"""Load a model directory and predict cases; what a prediction is and how it is written is the application's."""

from __future__ import annotations

import os
from pathlib import Path

from deepmed.applications import Prediction, get_application
from deepmed.errors import DeepMedError
from deepmed.model.device import pick_device
from deepmed.model.directory import WEIGHTS, read_card
from deepmed.model.weights import load_weights, split_networks

__all__ = ["Predictor", "Prediction"]


class Predictor:
    """A trained model ready to run: ``Predictor(model_dir).predict([t1, flair])``."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto", expected_app: str | None = None):
        self.model_dir = Path(model_dir)
        self.card = read_card(self.model_dir)
        self.app = get_application(self.card["application"])
        if expected_app is not None and self.app.name != expected_app:
            raise DeepMedError(f"{self.model_dir}: is a {self.app.name} model, expected a {expected_app} model")
        self.device = pick_device(device)
        self.networks = self.app.inference_parts(self.card)
        weights = split_networks(load_weights(self.model_dir / WEIGHTS), list(self.networks))
        for name, network in self.networks.items():
            try:
                network.load_state_dict(weights[name])
            except RuntimeError as exc:
                raise DeepMedError(f"{self.model_dir / WEIGHTS}: weights do not fit the network in the card "
                                   f"({str(exc).splitlines()[0]})") from None
            network.to(self.device).eval()

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
                   "probabilities": probabilities, "precision": precision, "model_name": self.model_dir.name}
        return self.app.predict(self.networks, inputs, self.card, self.device, options)

    def write(self, prediction: Prediction, path: Path) -> Path:
        return self.app.write_prediction(prediction, Path(path))
