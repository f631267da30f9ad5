"""Applications: everything a task defines (targets, plan, data, parts, step, validation, prediction, output).

Adding one (classification, autoencoder, GAN) means a module that subclasses ``TrainableApplication`` (or
``RunnableApplication`` for models that are only run, e.g. imported ones) and registers it, here or as a
plug-in (``deepmed.applications.plugins``); the driver, trainer and predictor do not change.
"""

from deepmed.applications import (  # noqa: F401  (register)
    autoencoder,
    case_level,
    case_regression,
    conditional_gan,
    interactive,
    monai_bundle,
    nnunet,
    regression,
    segmentation,
    super_resolution,
    trusted_bundle,
)
from deepmed.applications.base import (
    APPLICATIONS,
    Application,
    Parts,
    Prediction,
    PreparedData,
    RunnableApplication,
    StepContext,
    TrainableApplication,
    get_application,
    get_trainable_application,
    trainable_application_names,
)
from deepmed.applications.plugins import load_plugins
from deepmed.model.card import ModelCard


def trainable_as(card: ModelCard) -> list[str]:
    """The applications, besides the card's own, whose training a model with this card can start
    (``TrainableApplication.accepts_init``); importers write it into the card so the Slicer panels can offer it."""
    return [name for name in trainable_application_names()
            if name != card.application and get_trainable_application(name).accepts_init(card)]


#: What ``--app`` defaults to (and what ``make demo`` shows).
DEFAULT_APPLICATION = segmentation.SegmentationApplication.name

load_plugins()

__all__ = ["APPLICATIONS", "DEFAULT_APPLICATION", "Application", "Parts", "Prediction", "PreparedData",
           "RunnableApplication", "StepContext", "TrainableApplication", "get_application", "get_trainable_application",
           "trainable_application_names", "trainable_as"]
