"""nnU-Net v2 models imported with ``deepmed zoo import NNUNET_RESULT_FOLDER``: prediction exactly as nnU-Net's
``nnUNetPredictor`` makes it (its preprocessing, Gaussian sliding window, mirroring, fold ensemble and export),
written on the input's exact grid. Such models are imported and run: the application is runnable only."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from deepmed.applications.base import APPLICATIONS, Prediction, RunnableApplication
from deepmed.applications.inputs import input_channels
from deepmed.errors import DeepMedError
from deepmed.io.image_io import write_image
from deepmed.volume_inference.ongrid import image_like, keep_largest_component

NAME = "nnunet"  # the application of imported nnU-Net v2 models (the importer writes it into the card)


@APPLICATIONS.register(NAME, "nnU-Net v2 segmentation models (imported; nnU-Net's own inference)")
class NnUNetApplication(RunnableApplication):
    """Runs imported nnU-Net models; training them is nnU-Net's own business."""

    name = NAME
    output_kind = "label_map"
    instead = ("train it with nnU-Net and import the result folder (deepmed zoo import NNUNET_RESULT_FOLDER), or "
               "train a segmentation model here (deepmed train --app segmentation)")

    def inference_parts(self, card, model_dir):
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
        arrays = [sitk.GetArrayViewFromImage(c) for c in channels]  # read only; preprocessing copies once
        labels = predict_labels(members, card, arrays, list(reversed(reference.GetSpacing())),
                                RunOptions(device, bool(mirroring), step))
        del arrays
        if options.get("keep_largest"):
            labels = keep_largest_component(labels)
        return Prediction(image_like(labels, reference))

    def write_prediction(self, prediction, path):
        return write_image(prediction.output, Path(path), label=True)


__all__ = ["NnUNetApplication"]
