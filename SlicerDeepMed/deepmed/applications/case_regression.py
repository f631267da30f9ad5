"""``case_regression``: a number per case (an age, a volume) from the whole image. The case-level machinery
(input grid, networks, data, prediction as a table row) is ``case_level.CaseLevelApplication``'s."""

from __future__ import annotations

import numpy as np

from deepmed.applications.base import APPLICATIONS
from deepmed.applications.case_level import CaseLevelApplication
from deepmed.applications.task_settings import CaseRegressionTask
from deepmed.evaluation.case_level_metrics import value_metrics
from deepmed.losses.registry import VALUE_LOSSES, allow_for


@APPLICATIONS.register("case_regression", "one value per case from the whole image (e.g. an age): value out, "
                                          "L1/MSE losses")
class CaseRegressionApplication(CaseLevelApplication):
    name = "case_regression"
    key_metric = "mae"
    higher_is_better = False
    default_loss = "l1"
    config_defaults = {"quantity": "", "unit": ""}
    demo = "deepmed.applications.demos.case_level:value_demo"
    value_hint = "a number per training case"

    def metric_names(self):
        return ("mae", "rmse")

    def value_problem(self, value, labels):
        return "" if isinstance(value, (int, float)) else f"value {value!r} is not a number"

    def plan_target(self, fingerprint, config, reasons):
        return {"sampling": "uniform"}

    def out_channels(self, target_plan):
        return 1

    def encode(self, value, plan):
        if not isinstance(value, (int, float)):
            raise ValueError(f"value {value!r} is not a number")
        return np.asarray([value], dtype=np.float32)

    def target_statistics(self, targets):
        values = np.concatenate(targets).astype(np.float64)
        return {"target_mean": float(values.mean()), "target_std": float(max(values.std(), 1e-8))}

    def scaled(self, target, stats):
        return ((target - stats["target_mean"]) / stats["target_std"]).astype(np.float32)

    def activation(self, output):
        return output

    def case_result(self, activation, target, stats):
        unscale = lambda v: float(v) * stats["target_std"] + stats["target_mean"]  # noqa: E731
        return {"prediction": unscale(activation[0]), "target": unscale(target[0])}

    def summarize_validation(self, per_case):
        return value_metrics([c["target"] for c in per_case], [c["prediction"] for c in per_case])

    def decode(self, activation, card):
        stats = card.target.statistics
        return {"value": float(activation[0]) * stats["target_std"] + stats["target_mean"]}

    def target_card_fields(self, plan, stats, config):
        target = {"statistics": stats}
        target.update(CaseRegressionTask.from_config(config).card_target())
        return {"labels": [], "target": target}


allow_for(CaseRegressionApplication.name, VALUE_LOSSES)
