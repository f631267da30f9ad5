"""The training loop as a readable skeleton of hooks (nnU-Net's trainer shape, small), knowing no task.

    fit -> on_train_start -> per epoch: on_epoch_start -> app.train_step ... -> on_epoch_end (validate,
    checkpoint, early stop) -> on_train_end

The application hands in its parts (networks, losses, optimisers), its step and its validation; the loop
keeps checkpoints of all parts, progress events, stop/resume, the time budget and the agreement of ranks.

An epoch is a fixed number of iterations. Resumable: every epoch re-seeds its randomness from (seed, epoch,
rank), so a run resumed from a checkpoint (taken at an epoch end, or mid-epoch on Stop) retraces the
uninterrupted run exactly on the CPU (with epochs, not with a time budget, whose schedule follows the clock).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, list_data_collate
from monai.data import Dataset as MonaiDataset

from deepmed.applications import Application, Parts, PreparedData, StepContext
from deepmed.distributed import agree
from deepmed.errors import DeepMedInterrupted
from deepmed.model.directory import WEIGHTS
from deepmed.model.weights import merge_networks, save_weights
from deepmed.optim import set_learning_rate
from deepmed.planning.plan import Plan
from deepmed.planning.settings import DataSettings, TrainingSettings
from deepmed.progress import Reporter
from deepmed.training.checkpoint import restore_rng_state, rng_state, save_checkpoint
from deepmed.training.clock import Clock
from deepmed.training.stop import StopRequest

EXTEND_LR_FACTOR = 0.2  # --extend restarts the schedule from this share of the initial learning rate


@dataclass
class TrainState:
    epoch: int = 0              # epochs completed
    iteration: int = 0          # iterations completed in the current epoch
    best_metric: float | None = None
    best_epoch: int = -1
    epochs_without_improvement: int = 0  # validations without improvement (early stopping)
    seconds: float = 0.0        # wall time spent by earlier runs of this model (time budget, --resume)
    history: list[dict] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)  # of the current epoch so far (a mid-epoch resume)

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "iteration": self.iteration, "best_metric": self.best_metric,
                "best_epoch": self.best_epoch, "epochs_without_improvement": self.epochs_without_improvement,
                "seconds": self.seconds, "history": self.history, "epoch_losses": self.epoch_losses}

    @classmethod
    def from_dict(cls, t: dict) -> TrainState:
        return cls(t["epoch"], t["iteration"], t["best_metric"], t["best_epoch"], t["epochs_without_improvement"],
                   t.get("seconds", 0.0), list(t["history"]), [float(v) for v in t.get("epoch_losses", [])])


class Trainer:
    """Runs epochs of ``app.train_step`` with validation at the planned cadence, to epochs or to a time budget."""

    def __init__(self, *, app: Application, parts: Parts, data: PreparedData, transform, plan: Plan, config: dict,
                 device: torch.device, reporter: Reporter, model_dir: Path, dist=None, clock: Clock | None = None,
                 extend: bool = False, stop_file: Path | None = None):
        self.app, self.parts, self.data, self.transform = app, parts, data, transform
        self.plan, self.cfg, self.device, self.reporter = plan, config, device, reporter
        self.model_dir, self.dist, self.extend = Path(model_dir), dist, extend
        if not isinstance(plan, Plan):  # a plan.json's content
            plan = self.plan = Plan.from_json(plan, "Trainer(plan=...)")
        schedule, self.settings = plan.schedule, TrainingSettings.from_config(config)
        self.iterations = schedule.iterations_per_epoch
        self.batch_size, self.seed = schedule.batch_size, self.settings.seed
        self.clock = clock or Clock(None, schedule.time_limit_s)
        self.timed = self.clock.limit_s is not None
        self.max_epochs = schedule.epochs
        self.validate_every = schedule.validate_every
        self.step = StepContext(device, self.settings.amp_enabled, cpu_bf16=getattr(app, "cpu_bf16_training", False))
        self.state = TrainState()
        self.stop = StopRequest(stop_file)
        self.after_epoch_written = lambda state: None  # the driver writes metrics.csv / the card / curves here
        self.before_finished = lambda state: {}  # the driver's end of training (calibration): fields for 'finished'
        self._resume_rng: dict | None = None
        self._epoch_start = 0.0
        self._start_epoch = 0
        self._last_validated = -1
        self._since_validation_s = 0.0
        self._ended_by_time = False

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
            while self.timed or self.state.epoch < self.max_epochs:
                epoch = self.state.epoch
                self.on_epoch_start(epoch)
                # a run resumed mid-epoch continues the stopped epoch's losses (its mean covers the whole epoch)
                losses = self.state.epoch_losses = self.state.epoch_losses if self.state.iteration else []
                for iteration, batch in self.epoch_batches(epoch):
                    started = time.time()
                    losses.append(self.app.train_step(self.parts, batch, self.step)["loss"])
                    self.clock.record_iteration(time.time() - started)
                    self.state.iteration = iteration + 1
                    self.on_iteration_end(epoch, iteration, losses[-1])
                    if self.agree_after_iteration():
                        break
                self.on_epoch_end(epoch, losses)
                self.state.epoch_losses = []
                if self._ended_by_time or self.should_stop_early():
                    break
            self.on_train_end()
        finally:
            self.stop.uninstall()
        return self.state

    def agree_after_iteration(self) -> bool:
        """Stop requests from any rank, rank 0's clock and learning-rate progress; True: end the epoch now."""
        flags, values = agree(self.dist, [self.stop.requested],
                              [float(self.is_main and self.clock.out_of_time(bool(self.data.val))),
                               self.progress()])
        self.set_learning_rate(values[1])
        if flags[0]:
            self.on_stop(self.state.epoch)
        if values[0] > 0.5:
            self._ended_by_time = True
        return self._ended_by_time

    # ---- hooks -----------------------------------------------------------------------------------
    def on_train_start(self):
        self.clock.start_training()
        self._start_epoch = self.state.epoch
        for net in self.parts.networks.values():
            net.to(self.device)
        if self.dist is not None:
            self.parts.networks = {k: self.dist.wrap(v, self.device) for k, v in self.parts.networks.items()}
        self.set_learning_rate(self.progress())
        if self.timed and self.data.val and self.clock.validation_s == 0.0:
            self.measure_validation()
        self.emit("started", epochs=self.max_epochs, iterations_per_epoch=self.iterations, device=str(self.device),
                  model_dir=str(self.model_dir), start_epoch=self.state.epoch, train_cases=len(self.data.train),
                  validation_cases=len(self.data.val), time_limit_s=self.clock.limit_s,
                  world_size=self.dist.world_size if self.dist else 1)

    def on_epoch_start(self, epoch: int):
        self._epoch_start = time.time()
        for net in self.parts.networks.values():
            net.train()

    def epoch_batches(self, epoch: int):
        """Batches of this epoch from a freshly seeded loader; skips those already done (mid-epoch resume)."""
        rank, world = (self.dist.rank, self.dist.world_size) if self.dist else (0, 1)
        epoch_seed = (self.seed * 100003 + epoch * world + rank) % 2**31
        torch.manual_seed(epoch_seed)
        np.random.seed(epoch_seed)
        random.seed(epoch_seed)
        if hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(seed=epoch_seed)
        generator = torch.Generator().manual_seed(epoch_seed)
        draws = self.iterations * self.batch_size
        if self.data.sample_weights:  # items drawn in proportion to the application's weights
            sampler = torch.utils.data.WeightedRandomSampler(self.data.sample_weights, draws, replacement=True,
                                                             generator=generator)
        else:
            sampler = torch.utils.data.RandomSampler(range(len(self.data.train)), replacement=True,
                                                     num_samples=draws, generator=generator)
        loader = DataLoader(MonaiDataset(self.data.train, self.transform), batch_size=self.batch_size,
                            sampler=sampler, num_workers=DataSettings.from_config(self.cfg).num_workers,
                            collate_fn=list_data_collate)
        skip = self.state.iteration
        for iteration, batch in enumerate(loader):
            if iteration < skip:
                continue  # drawn again only to replay the data randomness of a stopped epoch
            if iteration == skip and skip > 0 and self._resume_rng is not None:
                restore_rng_state(self._resume_rng)
                self._resume_rng = None
            yield iteration, batch

    def on_iteration_end(self, epoch: int, iteration: int, loss: float):
        if self.timed:
            eta = self.clock.remaining_s()
        else:
            done = (epoch - self._start_epoch) * self.iterations + iteration + 1
            remaining = self.max_epochs * self.iterations - epoch * self.iterations - iteration - 1
            eta = (time.time() - self.clock.train_started) / max(done, 1) * remaining
        self.emit("iteration", epoch=epoch, iteration=iteration, iterations_per_epoch=self.iterations, loss=loss,
                  lr=self.learning_rate, eta_s=round(eta, 1), elapsed_s=round(self.clock.elapsed_s(), 1))

    def on_epoch_end(self, epoch: int, losses: list[float]):
        seconds = time.time() - self._epoch_start
        self._since_validation_s += seconds
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                  "lr": self.learning_rate, "seconds": round(seconds, 2)}
        eta = self.clock.remaining_s() if self.timed else (self.max_epochs - epoch - 1) * seconds
        self.emit("epoch", epoch=epoch, loss=record["loss"], lr=record["lr"], seconds=record["seconds"],
                  eta_s=round(eta, 1))
        improved = False
        if self.data.val and self.agree_to_validate(epoch):
            metrics = self.validate()
            record.update(metrics)
            improved = self.update_best(metrics[self.app.key_metric], epoch)
            self.emit("validation", epoch=epoch, metrics=metrics, key_metric=self.app.key_metric,
                      best=self.state.best_metric)
        elif not self.data.val:
            improved = True  # without validation cases the last weights are the best we know
            self.state.best_epoch = epoch
        self.state.history.append(record)
        self.state.epoch, self.state.iteration = epoch + 1, 0
        if self.is_main:
            if improved:
                path = save_weights(self.inference_weights(), self.model_dir / WEIGHTS)
                self.emit("checkpoint", epoch=epoch, kind="best", path=str(path))
            self.save_last()
            self.after_epoch_written(self.state)

    def agree_to_validate(self, epoch: int) -> bool:
        last = self._ended_by_time or (not self.timed and epoch + 1 >= self.max_epochs)
        if self.validate_every != "auto":
            wanted = last or (epoch + 1) % int(self.validate_every) == 0
        else:  # validation costs at most the planned share of the time; the first one measures it
            share = self.plan.schedule.validation_share
            wanted = last or self._last_validated < 0 or \
                self.clock.validation_s <= share * (self._since_validation_s + self.clock.validation_s)
            # a time budget ending within the next epoch validates at its end anyway: one validation fewer
            # (measured: a 189 s CPU run validated twice in its last 8 s, ~3 s each)
            remaining = self.clock.remaining_s()
            if wanted and not last and remaining is not None and self._last_validated >= 0 and \
                    remaining < self.iterations * self.clock.iteration_s + 2 * self.clock.validation_s:
                wanted = False
        _, values = agree(self.dist, [], [float(wanted)])
        return values[0] > 0.5

    def on_stop(self, epoch: int):
        path = self.save_last() if self.is_main else None
        if self.is_main:
            self.after_epoch_written(self.state)
        if self.dist is not None:
            self.dist.barrier()  # every rank leaves together, after rank 0 wrote the checkpoint
        self.emit("stopped", epoch=epoch, iteration=self.state.iteration, checkpoint=str(path))
        raise DeepMedInterrupted(f"training stopped at epoch {epoch + 1}, iteration {self.state.iteration}; "
                                 f"resume with --resume (checkpoint {path})")

    def on_train_end(self):
        extra = self.before_finished(self.state) if self.is_main else {}
        self.emit("finished", model_dir=str(self.model_dir), epochs=self.state.epoch,
                  best_metric=self.state.best_metric, best_epoch=self.state.best_epoch + 1,
                  seconds=round(self.clock.elapsed_s(), 1), ended_by="time" if self._ended_by_time else "epochs",
                  **extra)

    # ---- validation, best model, early stopping --------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Mean metrics over the validation cases, each rank validating its share."""
        started = time.time()
        rank, world = (self.dist.rank, self.dist.world_size) if self.dist else (0, 1)
        for net in self.parts.networks.values():
            net.eval()
        per_case = [self.app.validate_case(self.parts, item, self.plan, self.data.fitted, self.device)
                    for item in self.data.val[rank::world]]
        if self.dist is not None:
            per_case = [m for shard in self.dist.gather(per_case) for m in shard]
        for net in self.parts.networks.values():
            net.train()
        duration = time.time() - started
        _, values = agree(self.dist, [], [duration])  # rank 0's measure, for the same cadence everywhere
        self.clock.record_validation(values[0])
        self._since_validation_s = 0.0
        self._last_validated = self.state.epoch
        return self.app.summarize_validation(per_case)

    def measure_validation(self) -> None:
        """Time one validation case before training, so that a time budget keeps room for the final validation."""
        started = time.time()
        world = self.dist.world_size if self.dist else 1
        for net in self.parts.networks.values():
            net.eval()
        self.app.validate_case(self.parts, self.data.val[0], self.plan, self.data.fitted, self.device)
        for net in self.parts.networks.values():
            net.train()
        per_rank_cases = -(-len(self.data.val) // world)
        _, values = agree(self.dist, [], [(time.time() - started) * per_rank_cases])
        self.clock.record_validation(values[0])

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
        patience = self.settings.early_stopping
        return bool(patience) and self.state.epochs_without_improvement >= patience

    # ---- learning rate -----------------------------------------------------------------------------
    def progress(self) -> float:
        """Where the learning-rate schedule is: share of the time budget, or of the planned iterations."""
        if self.timed:
            return self.clock.time_progress()
        total = self.max_epochs * self.iterations
        return (self.state.epoch * self.iterations + self.state.iteration) / max(1, total)

    def set_learning_rate(self, progress: float) -> None:
        peak = (EXTEND_LR_FACTOR if self.extend else 1.0) * self.plan.schedule.lr_peak
        for optimizer in self.parts.optimizers.values():
            set_learning_rate(optimizer, self.plan.schedule.lr_schedule, progress, peak)

    @property
    def learning_rate(self) -> float:
        return next(iter(self.parts.optimizers.values())).param_groups[0]["lr"]

    # ---- state -----------------------------------------------------------------------------------
    def inference_weights(self) -> dict:
        return merge_networks({name: self.parts.network(name).state_dict() for name in self.app.inference_networks})

    def save_last(self) -> Path:
        self.state.seconds = self.clock.budget_before + self.clock.elapsed_s()
        state = {"trainer": self.state.to_dict(), "rng": rng_state(), "scalers": self.step.state_dict(),
                 "optimizers": {k: o.state_dict() for k, o in self.parts.optimizers.items()}}
        weights = merge_networks({name: self.parts.network(name).state_dict() for name in self.parts.networks})
        folder = save_checkpoint(self.model_dir / "checkpoints" / "last", weights, state)
        self.emit("checkpoint", epoch=self.state.epoch - 1, kind="last", path=str(folder))
        return folder

    def load_state(self, state: dict):
        self.state = TrainState.from_dict(state["trainer"])
        for name, optimizer in self.parts.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.step.load_state_dict(state.get("scalers", {}))
        self._resume_rng = state["rng"] if self.state.iteration > 0 else None

    def emit(self, event: str, **fields):
        if self.is_main:
            self.reporter.emit(event, **fields)
