"""Evaluation: overlap and surface-distance metrics for segmentations, error metrics for regression."""

from deepmed.evaluation.regression_metrics import regression_metrics
from deepmed.evaluation.segmentation_metrics import SEGMENTATION_COLUMNS, segmentation_metrics

__all__ = ["SEGMENTATION_COLUMNS", "regression_metrics", "segmentation_metrics"]
