"""Training to a time budget: when to end, how far along the learning-rate schedule is, when to validate.

The budget counts wall time from the start of the run (process start for the CLI), so data loading and
validation are included. Training ends when the next iteration plus a final validation (and the calibration, a
pass of the same size, for segmentations) would not fit, leaving ``END_MARGIN_S`` for writing the model; the
learning-rate progress is the share of the training time spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable

END_MARGIN_S = 4.0  # writing the card, curves and the last checkpoint, and leaving the process


class Clock:
    """Wall-clock bookkeeping of one run. ``limit_s`` None: no time budget (epochs decide).
    ``now``: the time source (``time.time``; tests pass a fake one)."""

    def __init__(self, started_at: float | None, limit_s: float | None, budget_before: float = 0.0,
                 now: Callable[[], float] = time.time):
        self.now = now
        self.started_at = started_at if started_at is not None else now()
        self.limit_s = float(limit_s) if limit_s else None
        self.budget_before = budget_before     # what those runs' time already spent of the budget
        self.iteration_s = 0.0                 # running mean of one iteration
        self.validation_s = 0.0                # duration of the last validation
        self.passes_at_end = 1                 # validation-sized passes after the last iteration (+1: calibration)
        self.train_started = self.started_at
        self._iterations = 0

    # ---- measurements ------------------------------------------------------------------------------
    def start_training(self) -> None:
        self.train_started = self.now()

    def record_iteration(self, seconds: float) -> None:
        self._iterations += 1
        if self._iterations > 1:  # the first iteration carries one-off costs (allocation, caching)
            weight = 1.0 / min(self._iterations - 1, 20)
            self.iteration_s += weight * (seconds - self.iteration_s)
        else:
            self.iteration_s = seconds

    def record_validation(self, seconds: float) -> None:
        self.validation_s = seconds

    # ---- decisions (made on rank 0, agreed by the others) ---------------------------------------------
    @property
    def deadline(self) -> float | None:
        if self.limit_s is None:
            return None
        return self.started_at + self.limit_s - self.budget_before - END_MARGIN_S

    def out_of_time(self, with_final_validation: bool) -> bool:
        """True when one more iteration (and the final validation) would end after the deadline."""
        if self.deadline is None:
            return False
        reserve = self.iteration_s + (self.validation_s * self.passes_at_end if with_final_validation else 0.0)
        return self.now() + reserve >= self.deadline

    def time_progress(self) -> float:
        """Share of the training time spent, in [0, 1] (the learning-rate schedule's clock)."""
        if self.deadline is None:
            return 0.0
        reserve = self.validation_s * self.passes_at_end
        total = max(1e-6, self.deadline - reserve - self.train_started) + self.budget_before
        return min(1.0, (self.now() - self.train_started + self.budget_before) / total)

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - self.now())

    def elapsed_s(self) -> float:
        return self.now() - self.started_at
