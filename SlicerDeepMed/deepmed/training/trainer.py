"""The training loop as a readable skeleton of hooks (nnU-Net's trainer shape, small).

    fit -> on_train_start -> per epoch: on_epoch_start -> train_step ... -> on_epoch_end (validate,
    checkpoint, early stop) -> on_train_end

Resumable: every epoch re-seeds its randomness from (seed, epoch), so a run resumed from a checkpoint
(taken at an epoch end, or mid-epoch on Stop) retraces the uninterrupted run exactly on the CPU.
"""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset as MonaiDataset, list_data_collate

from deepmed.applications import Application
from deepmed.errors import DeepMedInterrupted
from deepmed.inference.sliding import predict_volume
from deepmed.training.checkpoint import restore_rng_state, rng_state, save_checkpoint, save_weights
from deepmed.training.progress import Reporter

#: Environment variable naming a file whose appearance asks a running training to stop (with checkpoint).
STOP_FILE_VARIABLE = "DEEPMED_STOP_FILE"


@dataclass
class TrainState:
    epoch: int = 0              # epochs completed
    iteration: int = 0          # iterations completed in the current epoch
    best_metric: float | None = None
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "iteration": self.iteration, "best_metric": self.best_metric,
                "best_epoch": self.best_epoch, "epochs_without_improvement": self.epochs_without_improvement,
                "history": self.history}


class StopRequest:
    """Set by SIGINT/SIGTERM, by a caller (e.g. a GUI thread), or by the file named in ``$DEEPMED_STOP_FILE``
    appearing (how the Slicer panels ask a worker process to stop on every platform): finish the step,
    checkpoint, stop."""

    def __init__(self):
        self._requested = False
        self._previous: dict = {}
        stop_file = os.environ.get(STOP_FILE_VARIABLE)
        self.stop_file = Path(stop_file) if stop_file else None

    def __call__(self, signum=None, frame=None):
        self._requested = True

    @property
    def requested(self) -> bool:
        if not self._requested and self.stop_file is not None and self.stop_file.exists():
            self._requested = True
        return self._requested

    @requested.setter
    def requested(self, value: bool):
        self._requested = bool(value)

    def install(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self)

    def uninstall(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class Trainer:
    """Runs epochs of patch training with periodic sliding-window validation."""

    def __init__(self, *, app: Application, model: torch.nn.Module, loss_fn: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler, train_data: list[dict], train_transform,
                 val_data: list[dict], config: dict, device: torch.device, reporter: Reporter, model_dir: Path,
                 patch_zyx: list[int], target_stats: dict, labels: dict[str, int], dist=None):
        self.app, self.model, self.loss_fn = app, model, loss_fn
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_data, self.train_transform, self.val_data = train_data, train_transform, val_data
        self.cfg, self.device, self.reporter, self.model_dir = config, device, reporter, Path(model_dir)
        self.patch_zyx, self.target_stats, self.labels = patch_zyx, target_stats, labels
        self.dist = dist
        t = config["training"]
        self.epochs, self.batch_size, self.seed = t["epochs"], t["batch_size"], t["seed"]
        self.iterations = t["iterations_per_epoch"] or max(1, math.ceil(len(train_data) / self.batch_size))
        self.use_amp = device.type == "cuda" and t["amp"] != "off"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and not torch.cuda.is_bf16_supported())
        self.state = TrainState()
        self.stop = StopRequest()
        self._epoch_start = 0.0
        self._run_start = 0.0

    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    # ---- the skeleton ----------------------------------------------------------------------------
    def fit(self, resume_state: dict | None = None) -> TrainState:
        if resume_state is not None:
            self.load_state(resume_state)
        self.stop.install()
        try:
            self.on_train_start()
            while self.state.epoch < self.epochs:
                epoch = self.state.epoch
                self.on_epoch_start(epoch)
                losses = []
                for iteration, batch in self.epoch_batches(epoch):
                    losses.append(self.train_step(batch))
                    self.state.iteration = iteration + 1
                    self.on_iteration_end(epoch, iteration, losses[-1])
                    if self.stop.requested:
                        self.on_stop(epoch)
                self.on_epoch_end(epoch, losses)
                if self.should_stop_early():
                    break
            self.on_train_end()
        finally:
            self.stop.uninstall()
        return self.state

    # ---- hooks -----------------------------------------------------------------------------------
    def on_train_start(self):
        self._run_start = time.time()
        self.emit("started", epochs=self.epochs, iterations_per_epoch=self.iterations, device=str(self.device),
                  model_dir=str(self.model_dir), start_epoch=self.state.epoch, train_cases=len(self.train_data),
                  validation_cases=len(self.val_data))

    def on_epoch_start(self, epoch: int):
        self._epoch_start = time.time()
        self.model.train()

    def epoch_batches(self, epoch: int):
        """Batches of this epoch from a freshly seeded loader; skips those already done (mid-epoch resume)."""
        rank, world = (self.dist.rank, self.dist.world_size) if self.dist else (0, 1)
        epoch_seed = (self.seed * 100003 + epoch * world + rank) % 2**31
        torch.manual_seed(epoch_seed)
        np.random.seed(epoch_seed)
        random.seed(epoch_seed)
        self.train_transform.set_random_state(seed=epoch_seed)
        sampler = torch.utils.data.RandomSampler(range(len(self.train_data)), replacement=True,
                                                 num_samples=self.iterations * self.batch_size,
                                                 generator=torch.Generator().manual_seed(epoch_seed))
        loader = DataLoader(MonaiDataset(self.train_data, self.train_transform), batch_size=self.batch_size,
                            sampler=sampler, num_workers=self.cfg["data"]["num_workers"],
                            collate_fn=list_data_collate)
        skip = self.state.iteration
        for iteration, batch in enumerate(loader):
            if iteration < skip:
                continue  # drawn again only to replay the data randomness of a stopped epoch
            if iteration == skip and skip > 0 and self._resume_rng is not None:
                restore_rng_state(self._resume_rng)
                self._resume_rng = None
            yield iteration, batch

    def train_step(self, batch: dict) -> float:
        image = batch["image"].to(self.device, non_blocking=True)
        target = batch["label"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast(device_type=self.device.type, dtype=dtype, enabled=self.use_amp):
            output = self.model(image)
            if isinstance(output, (list, tuple)):  # deep supervision heads: train on the full-resolution one
                output = output[0]
            loss = self.loss_fn(output.float(), target)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 12.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach().item())

    def on_iteration_end(self, epoch: int, iteration: int, loss: float):
        done = epoch * self.iterations + iteration + 1
        remaining = self.epochs * self.iterations - done
        elapsed = time.time() - self._run_start
        self._iterations_this_run = getattr(self, "_iterations_this_run", 0) + 1
        eta = elapsed / self._iterations_this_run * remaining
        self.emit("iteration", epoch=epoch, iteration=iteration, iterations_per_epoch=self.iterations, loss=loss,
                  lr=self.optimizer.param_groups[0]["lr"], eta_s=round(eta, 1))

    def on_epoch_end(self, epoch: int, losses: list[float]):
        self.scheduler.step()
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                  "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(time.time() - self._epoch_start, 2)}
        remaining = (self.epochs - epoch - 1) * record["seconds"]
        self.emit("epoch", epoch=epoch, loss=record["loss"], lr=record["lr"], seconds=record["seconds"],
                  eta_s=round(remaining, 1))
        improved = False
        if self.val_data and ((epoch + 1) % self.cfg["training"]["val_every"] == 0 or epoch + 1 == self.epochs):
            metrics = self.validate() if self.is_main else {}
            record.update(metrics)
            if self.is_main:
                improved = self.update_best(metrics[self.app.key_metric], epoch)
                self.emit("validation", epoch=epoch, metrics=metrics, key_metric=self.app.key_metric,
                          best=self.state.best_metric)
        elif not self.val_data:
            improved = True  # without validation cases the last weights are the best we know
            self.state.best_epoch = epoch
        self.state.history.append(record)
        self.state.epoch, self.state.iteration = epoch + 1, 0
        if self.is_main:
            if improved:
                path = save_weights(self.unwrapped.state_dict(), self.model_dir / "model.safetensors")
                self.emit("checkpoint", epoch=epoch, kind="best", path=str(path))
            self.save_last()
            self.after_epoch_written(self.state)

    def after_epoch_written(self, state: TrainState):
        """Extension point: the driver writes metrics.csv / curves here."""

    def on_stop(self, epoch: int):
        path = self.save_last() if self.is_main else None
        self.after_epoch_written(self.state)
        self.emit("stopped", epoch=epoch, iteration=self.state.iteration, checkpoint=str(path))
        raise DeepMedInterrupted(f"training stopped at epoch {epoch + 1}, iteration {self.state.iteration}; "
                                 f"resume with --resume (checkpoint {path})")

    def on_train_end(self):
        self.emit("finished", model_dir=str(self.model_dir), epochs=self.state.epoch,
                  best_metric=self.state.best_metric, best_epoch=self.state.best_epoch + 1,
                  seconds=round(time.time() - self._run_start, 1))

    # ---- validation, best model, early stopping --------------------------------------------------
    def validate(self) -> dict[str, float]:
        per_case = []
        inference = self.cfg["inference"]
        for case in self.val_data:
            image = torch.from_numpy(case["image"])[None]
            activation = predict_volume(self.unwrapped, image, self.patch_zyx, activation=self.app.activation,
                                        overlap=inference["overlap"], sw_batch_size=inference["sw_batch_size"],
                                        precision="float32", device=self.device)
            target = torch.from_numpy(np.asarray(case["label"]))[None]
            per_case.append(self.app.validation_metrics(activation, target, self.target_stats, self.labels))
        self.model.train()
        return {k: float(np.mean([m[k] for m in per_case])) for k in per_case[0]}

    def update_best(self, value: float, epoch: int) -> bool:
        best = self.state.best_metric
        better = best is None or (value > best if self.app.higher_is_better else value < best)
        if better:
            self.state.best_metric, self.state.best_epoch = value, epoch
            self.state.epochs_without_improvement = 0
        else:
            self.state.epochs_without_improvement += 1
        return better

    def should_stop_early(self) -> bool:
        patience = self.cfg["training"]["early_stopping"]
        return bool(patience) and self.state.epochs_without_improvement >= patience

    # ---- state -----------------------------------------------------------------------------------
    @property
    def unwrapped(self) -> torch.nn.Module:
        return getattr(self.model, "module", self.model)

    def save_last(self) -> Path:
        state = {"trainer": self.state.to_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng_state()}
        folder = save_checkpoint(self.model_dir / "checkpoints" / "last", self.unwrapped.state_dict(), state)
        self.emit("checkpoint", epoch=self.state.epoch - 1, kind="last", path=str(folder))
        return folder

    _resume_rng: dict | None = None

    def load_state(self, state: dict):
        t = state["trainer"]
        self.state = TrainState(t["epoch"], t["iteration"], t["best_metric"], t["best_epoch"],
                                t["epochs_without_improvement"], list(t["history"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self._resume_rng = state["rng"] if self.state.iteration > 0 else None

    def emit(self, event: str, **fields):
        if self.is_main:
            self.reporter.emit(event, **fields)
