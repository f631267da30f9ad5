"""Loss registry. Label losses take logits and an integer label (B,1,...) (per voxel, or per case: logits
(B, classes) and class indices (B, 1)); value losses take predictions and targets of the same shape. Which
losses fit which application is said by the applications (``allow_for``), so this module names none."""

from __future__ import annotations

import torch

from deepmed.errors import DeepMedError
from deepmed.utils.registry import Registry

LOSSES = Registry("loss")

#: Loss groups an application can declare with ``allow_for(app_name, group)``.
VOXEL_LABEL_LOSSES = ("dice", "dice_ce", "dice_focal", "generalized_dice", "tversky", "generalized_wasserstein_dice",
                      "cross_entropy")
CASE_LABEL_LOSSES = ("cross_entropy", "focal")
VALUE_LOSSES = ("l1", "mse", "rmse", "huber")


def losses_for(app_name: str) -> list[str]:
    """The losses that fit application ``app_name``, in registration order."""
    return [name for name in LOSSES.registration_order()
            if app_name.lower() in LOSSES.metadata(name).get("applications", ())]


def allow_for(app_name: str, names: list[str]) -> None:
    """Let application ``app_name`` (e.g. a plug-in) use the registered losses ``names`` as well."""
    for name in names:
        known = LOSSES.metadata(name).get("applications", ())
        if app_name.lower() not in known:
            LOSSES.update_metadata(name, applications=(*known, app_name.lower()))


def build_loss(name: str, num_classes: int, args: dict | None = None) -> torch.nn.Module:
    factory = LOSSES.get(name)
    try:
        return factory(num_classes=num_classes, **(args or {}))
    except TypeError as exc:
        raise DeepMedError(f"loss {name}: invalid arguments {args}: {exc}") from None


_SEG = dict(to_onehot_y=True, softmax=True)


@LOSSES.register("dice", "soft Dice (Milletari et al. 2016)")
def _dice(num_classes, **args):
    from monai.losses import DiceLoss

    return DiceLoss(**{**_SEG, **args})


@LOSSES.register("dice_ce", "Dice + cross-entropy (nnU-Net's default)")
def _dice_ce(num_classes, **args):
    from monai.losses import DiceCELoss

    return DiceCELoss(**{**_SEG, **args})


@LOSSES.register("dice_focal", "Dice + focal loss, for small structures")
def _dice_focal(num_classes, **args):
    from monai.losses import DiceFocalLoss

    return DiceFocalLoss(**{**_SEG, **args})


@LOSSES.register("generalized_dice", "generalised Dice (Sudre et al. 2017), class-imbalance weighting")
def _gdice(num_classes, **args):
    from monai.losses import GeneralizedDiceLoss

    return GeneralizedDiceLoss(**{**_SEG, **args})


@LOSSES.register("tversky", "Tversky loss (Salehi et al. 2017), trades false positives for negatives")
def _tversky(num_classes, **args):
    from monai.losses import TverskyLoss

    return TverskyLoss(**{**_SEG, **args})


@LOSSES.register("generalized_wasserstein_dice", "generalised Wasserstein Dice (Fidon et al. 2017)")
def _gwdl(num_classes, **args):
    from monai.losses import GeneralizedWassersteinDiceLoss

    matrix = args.pop("dist_matrix", None)
    if matrix is None:  # every wrong class costs the same, background vs foreground included
        matrix = 1.0 - torch.eye(num_classes)
    loss = GeneralizedWassersteinDiceLoss(dist_matrix=torch.as_tensor(matrix, dtype=torch.float32), **args)
    return _SqueezeLabel(loss)


@LOSSES.register("cross_entropy", "cross-entropy (voxel-wise, or per case)")
def _ce(num_classes, **args):
    return _SqueezeLabel(torch.nn.CrossEntropyLoss(**args), long=True)


@LOSSES.register("focal", "focal loss (Lin et al. 2017): down-weights easy cases")
def _focal(num_classes, **args):
    from monai.losses import FocalLoss

    return FocalLoss(**{"to_onehot_y": True, "use_softmax": True, **args})


class _SqueezeLabel(torch.nn.Module):
    """Adapt losses that want labels as (B, ...) instead of (B, 1, ...)."""

    def __init__(self, loss: torch.nn.Module, long: bool = False):
        super().__init__()
        self.loss, self.long = loss, long

    def forward(self, logits, label):
        label = label[:, 0]
        return self.loss(logits, label.long() if self.long else label)


@LOSSES.register("l1", "mean absolute error")
def _l1(num_classes, **args):
    return torch.nn.L1Loss(**args)


@LOSSES.register("mse", "mean squared error")
def _mse(num_classes, **args):
    return torch.nn.MSELoss(**args)


@LOSSES.register("rmse", "root mean squared error (NiftyNet's RMSE)")
def _rmse(num_classes, **args):
    return _RMSE()


@LOSSES.register("huber", "Huber / smooth L1 loss")
def _huber(num_classes, **args):
    return torch.nn.HuberLoss(**args)


class _RMSE(torch.nn.Module):
    def forward(self, prediction, target):
        return torch.sqrt(torch.mean((prediction - target) ** 2) + 1e-12)
