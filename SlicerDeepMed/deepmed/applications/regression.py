"""Regression (image -> image, e.g. MR -> pseudo-CT): a scalar volume out, in the target's units."""

from __future__ import annotations

import numpy as np

from deepmed.applications.base import APPLICATIONS
from deepmed.applications.dense import DenseApplication
from deepmed.losses.registry import VALUE_LOSSES, allow_for


@APPLICATIONS.register("regression", "image-to-image regression: scalar volume out, L1/MSE/RMSE/Huber losses")
class RegressionApplication(DenseApplication):
    name = "regression"
    target_kind = "scalar_map"
    output_kind = "scalar_volume"
    discrete_target = False
    default_loss = "l1"
    default_sampling = "uniform"
    key_metric = "mae"
    higher_is_better = False
    exported_activation = "identity"
    exported_decoding = "value * target.statistics.target_std + target.statistics.target_mean"

    def metric_names(self):
        return ("mae", "rmse")

    def out_channels(self, labels):
        return 1

    def network_defaults(self, network):
        """Instance normalisation discards each patch's absolute level, which a regression must keep."""
        return {"unet": {"norm": "batch"}, "dynunet": {"norm_name": "batch"}}.get(network, {})

    def target_statistics(self, targets):
        values = np.concatenate([t.reshape(-1) for t in targets]).astype(np.float64)
        return {"target_mean": float(values.mean()), "target_std": float(max(values.std(), 1e-8))}

    def encode_target(self, target, stats, labels):
        return ((target - stats["target_mean"]) / stats["target_std"]).astype(np.float32)

    def activation(self, logits):
        return logits.float()

    def decode_on_input(self, channels, stats, labels):
        for values in channels():  # one channel; used while the generator that owns it is alive
            return (values * stats["target_std"] + stats["target_mean"]).astype(np.float32)
        raise ValueError("the network produced no output channel")

    def validation_metrics(self, activation, target, stats, labels):
        """MAE and RMSE in the target's units on the working grid."""
        scale = stats["target_std"]
        error = (activation - target).float() * scale
        return {"mae": error.abs().mean().item(), "rmse": error.pow(2).mean().sqrt().item()}


allow_for(RegressionApplication.name, VALUE_LOSSES)
