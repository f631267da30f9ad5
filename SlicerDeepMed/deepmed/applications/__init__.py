"""Applications: what a task defines (outputs, loss, sampling, metrics, post-processing, writing).

Adding one (classification, autoencoder, GAN) means adding a module here and registering it; the driver,
trainer and predictor do not change.
"""

from deepmed.applications.base import (APPLICATIONS, Application, Parts, Prediction, PreparedData, StepContext,
                                       get_application)
from deepmed.applications import regression, segmentation  # noqa: F401  (register)

__all__ = ["APPLICATIONS", "Application", "Parts", "Prediction", "PreparedData", "StepContext", "get_application"]
