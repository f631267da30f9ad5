"""Optimisers and learning-rate schedules by name.

A schedule is a factor of the initial learning rate as a function of training *progress* in [0, 1]: the share
of planned iterations done, or of the time budget spent when training to a time limit. So the same schedule
ends exactly when the run ends, however fast this machine is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from deepmed.planning.settings import OptimizerSettings
from deepmed.utils.registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")
DECAY_SHARE = 0.1  # "wsd": the share of the run at the end over which the learning rate decays


def build_optimizer(config: Mapping, parameters) -> torch.optim.Optimizer:
    """The optimiser of a resolved configuration's ``optimizer:`` section over ``parameters``."""
    optimizer = OptimizerSettings.from_config(config)
    return OPTIMIZERS.get(optimizer.name)(parameters, lr=optimizer.lr, weight_decay=optimizer.weight_decay)


def learning_rate_factor(schedule: str, progress: float) -> float:
    """Factor of the initial learning rate at ``progress`` (clipped to [0, 1])."""
    return SCHEDULERS.get(schedule)(min(1.0, max(0.0, progress)))


def set_learning_rate(optimizer: torch.optim.Optimizer, schedule: str, progress: float, peak: float = 1.0) -> float:
    """Apply the schedule to every parameter group (relative to its ``initial_lr`` times ``peak``); returns
    the first group's learning rate."""
    factor = learning_rate_factor(schedule, progress) * peak
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"] * factor
    return optimizer.param_groups[0]["lr"]


@OPTIMIZERS.register("adamw", "AdamW (decoupled weight decay)")
def _adamw(params, lr, weight_decay, **args):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **args)


@OPTIMIZERS.register("adam", "Adam")
def _adam(params, lr, weight_decay, **args):
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **args)


@OPTIMIZERS.register("sgd", "SGD with Nesterov momentum 0.99 (nnU-Net)")
def _sgd(params, lr, weight_decay, **args):
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, **{"momentum": 0.99, "nesterov": True, **args})


@SCHEDULERS.register("none", "constant learning rate")
def _none(progress):
    return 1.0


@SCHEDULERS.register("cosine", "cosine decay to zero over the run")
def _cosine(progress):
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@SCHEDULERS.register("wsd", f"flat, then cosine decay to zero over the last {DECAY_SHARE:.0%} of the run "
                     "(warmup-stable-decay without the warm-up)")
def _wsd(progress):
    start = 1.0 - DECAY_SHARE
    return 1.0 if progress <= start else _cosine((progress - start) / DECAY_SHARE)


@SCHEDULERS.register("poly", "polynomial decay (power 0.9, nnU-Net)")
def _poly(progress):
    return (1.0 - progress) ** 0.9


@SCHEDULERS.register("step", "divide by 10 at 2/3 of the run")
def _step(progress):
    return 0.1 if progress >= 2 / 3 else 1.0
