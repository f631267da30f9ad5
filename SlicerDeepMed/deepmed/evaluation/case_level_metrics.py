"""Metrics over cases: one class (with probabilities) or one value per case against the reference.

Classes: accuracy, balanced accuracy (the mean recall of the classes present in the reference), the area
under the ROC curve of each class against the others (MONAI's ``compute_roc_auc``) and their mean, and the
confusion matrix (rows: reference, columns: prediction). Values: MAE, mean error (bias), RMSE and R².
A metric that is undefined on the data (an AUC for a class absent from the reference, R² of constant
references) is left out rather than reported as NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(reference: Sequence[int], predicted: Sequence[int], n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = reference class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(reference, dtype=int), np.asarray(predicted, dtype=int)), 1)
    return matrix


def one_vs_rest_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for the ``positive`` cases against the others; None when one side is empty."""
    if positive.all() or not positive.any():
        return None
    import torch
    from monai.metrics import compute_roc_auc

    return float(compute_roc_auc(torch.as_tensor(scores, dtype=torch.float64),
                                 torch.as_tensor(positive, dtype=torch.float64)))


def classification_metrics(reference: Sequence[int], probabilities, class_names: Sequence[str]) -> dict:
    """Metrics of class ``probabilities`` (N, classes) against ``reference`` class indices (N,).

    Returns accuracy, balanced_accuracy, auc_<class> per class, auc (their mean) and ``confusion`` (a list of
    rows); the prediction is the most probable class.
    """
    reference = np.asarray(reference, dtype=int)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(len(reference), len(class_names))
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(reference, predicted, len(class_names))
    present = matrix.sum(axis=1) > 0
    recalls = np.diag(matrix)[present] / matrix.sum(axis=1)[present]
    metrics: dict = {"accuracy": float(np.trace(matrix) / max(len(reference), 1)),
                     "balanced_accuracy": float(recalls.mean()) if recalls.size else 0.0}
    aucs = {}
    for index, name in enumerate(class_names):
        auc = one_vs_rest_auc(probabilities[:, index], reference == index)
        if auc is not None:
            aucs[f"auc_{name}"] = auc
    if aucs:
        metrics["auc"] = float(np.mean(list(aucs.values())))
    metrics.update(aucs)
    metrics["confusion"] = matrix.tolist()
    return metrics


def value_metrics(reference: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    """MAE, mean error (prediction - reference), RMSE and R² (1 - residual / total sum of squares)."""
    reference = np.asarray(reference, dtype=np.float64)
    error = np.asarray(predicted, dtype=np.float64) - reference
    metrics = {"mae": float(np.abs(error).mean()), "me": float(error.mean()),
               "rmse": float(np.sqrt(np.mean(error**2)))}
    total = float(np.sum((reference - reference.mean()) ** 2))
    if total > 0:
        metrics["r2"] = 1.0 - float(np.sum(error**2)) / total
    return metrics
