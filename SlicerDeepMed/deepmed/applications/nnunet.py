"""nnU-Net v2 models imported with ``deepmed zoo import NNUNET_RESULT_FOLDER``: prediction exactly as nnU-Net's
``nnUNetPredictor`` makes it (its preprocessing, Gaussian sliding window, mirroring, fold ensemble and export),
written on the input's exact grid. Such models are imported, not trained here."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from deepmed.applications.base import APPLICATIONS, Application, Prediction
from deepmed.applications.inputs import input_channels
from deepmed.errors import DeepMedError
from deepmed.io.image_io import write_image
from deepmed.volume_inference.ongrid import image_like, keep_largest_component

NOT_TRAINED_HERE = "nnU-Net models are imported (deepmed zoo import NNUNET_RESULT_FOLDER), not trained by deepmed"


NAME = "nnunet"  # the application of imported nnU-Net v2 models (the importer writes it into the card)


@APPLICATIONS.register(NAME, "nnU-Net v2 segmentation models (imported; nnU-Net's own inference)")
class NnUNetApplication(Application):
    name = NAME
    target_kind = "label_map"
    output_kind = "label_map"
    key_metric = "mean_dice"
    higher_is_better = True
    default_loss = "dice_ce"

    # ---- training is nnU-Net's own business ------------------------------------------------------------
    def check_dataset(self, dataset):
        raise DeepMedError(NOT_TRAINED_HERE)

    def load_cases(self, cases):
        raise DeepMedError(NOT_TRAINED_HERE)

    def fingerprint(self, loaded, dataset):
        raise DeepMedError(NOT_TRAINED_HERE)

    def plan(self, fingerprint, config, device, reasons):
        raise DeepMedError(NOT_TRAINED_HERE)

    def prepare_data(self, loaded_train, loaded_val, dataset, plan, config):
        raise DeepMedError(NOT_TRAINED_HERE)

    def training_transform(self, plan, config):
        raise DeepMedError(NOT_TRAINED_HERE)

    def build_parts(self, plan, config, fitted):
        raise DeepMedError(NOT_TRAINED_HERE)

    def train_step(self, parts, batch, step):
        raise DeepMedError(NOT_TRAINED_HERE)

    def validate_case(self, parts, item, plan, fitted, device):
        raise DeepMedError(NOT_TRAINED_HERE)

    def card_fields(self, plan, fitted, dataset, config):
        raise DeepMedError(NOT_TRAINED_HERE)

    # ---- inference ---------------------------------------------------------------------------------------
    def inference_parts(self, card):
        from deepmed.nnunet.network import inference_network
        from deepmed.nnunet.prediction import network_args

        return {name: inference_network(args) for name, args in network_args(card).items()}

    def predict(self, members, inputs, card, device, options):
        from deepmed.nnunet.prediction import RunOptions, predict_labels

        if options.get("probabilities"):
            raise DeepMedError(f"model {options.get('model_name', 'model')}: probability and uncertainty maps are "
                               "not available for nnU-Net models (labels only)")
        inference = card.inference
        mirroring = inference.get("tta_flips", True) if options.get("tta_flips") is None else options["tta_flips"]
        overlap = options.get("overlap")
        step = card.task.get("tile_step_size", 0.5) if overlap is None else 1.0 - float(overlap)
        if not 0 < step <= 1:
            raise DeepMedError(f"--overlap {overlap}: expected a value in [0, 1)")
        channels = input_channels(inputs, card, options.get("model_name", "model"), align=False)
        reference = channels[0]
        arrays = [sitk.GetArrayFromImage(c) for c in channels]
        labels = predict_labels(members, card, arrays, list(reversed(reference.GetSpacing())),
                                RunOptions(device, bool(mirroring), step))
        del arrays
        if options.get("keep_largest"):
            labels = keep_largest_component(labels)
        return Prediction(image_like(labels, reference))

    def write_prediction(self, prediction, path):
        return write_image(prediction.output, Path(path), label=True)


__all__ = ["NnUNetApplication"]
