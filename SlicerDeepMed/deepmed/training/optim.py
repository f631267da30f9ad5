"""Optimisers and learning-rate schedules by name."""

from __future__ import annotations

import torch

from deepmed.utils.registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")


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
def _none(optimizer, total_steps):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


@SCHEDULERS.register("cosine", "cosine decay to zero over the run")
def _cosine(optimizer, total_steps):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))


@SCHEDULERS.register("poly", "polynomial decay (power 0.9, nnU-Net)")
def _poly(optimizer, total_steps):
    return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=max(1, total_steps), power=0.9)


@SCHEDULERS.register("step", "divide by 10 at 2/3 of the run")
def _step(optimizer, total_steps):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, 2 * total_steps // 3), gamma=0.1)
