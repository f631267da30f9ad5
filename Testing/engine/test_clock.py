"""The training clock on a fake time source: budget accounting, the validation reserve, time-limit stops."""

import pytest

from deepmed.training.clock import END_MARGIN_S, Clock


class FakeTime:
    """A time source that moves only when told to."""

    def __init__(self, start: float = 1000.0):
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def now():
    return FakeTime()


def test_without_a_limit_the_clock_never_ends_the_run(now):
    clock = Clock(None, None, now=now)
    assert clock.started_at == now()
    now.advance(1e6)
    assert clock.deadline is None and clock.remaining_s() is None
    assert clock.out_of_time(with_final_validation=True) is False
    assert clock.time_progress() == 0.0
    assert clock.elapsed_s() == pytest.approx(1e6)


def test_the_deadline_keeps_the_end_margin_and_subtracts_earlier_runs(now):
    fresh = Clock(now(), 100, now=now)
    assert fresh.deadline == pytest.approx(now() + 100 - END_MARGIN_S)
    resumed = Clock(now(), 100, budget_before=30.0, now=now)
    assert resumed.deadline == pytest.approx(now() + 70 - END_MARGIN_S)
    assert resumed.remaining_s() == pytest.approx(70 - END_MARGIN_S)


def test_the_budget_counts_from_the_start_of_the_run_not_of_training(now):
    started = now()
    now.advance(20)  # data loading and planning before the first step are part of the budget
    clock = Clock(started, 60, now=now)
    clock.start_training()
    assert clock.elapsed_s() == pytest.approx(20)
    assert clock.remaining_s() == pytest.approx(40 - END_MARGIN_S)


def test_the_iteration_time_is_a_running_mean_that_drops_the_first_one(now):
    clock = Clock(now(), 100, now=now)
    clock.record_iteration(10.0)  # first iteration: allocation, caching
    assert clock.iteration_s == 10.0
    clock.record_iteration(1.0)
    assert clock.iteration_s == pytest.approx(1.0)
    clock.record_iteration(3.0)
    assert clock.iteration_s == pytest.approx(2.0)


def test_out_of_time_when_the_next_iteration_and_the_final_validation_would_not_fit(now):
    clock = Clock(now(), 100, now=now)
    clock.start_training()
    clock.record_iteration(2.0)
    clock.record_validation(10.0)
    deadline = clock.deadline
    now.t = deadline - 11.0  # an iteration (2 s) + a validation (10 s) no longer fit
    assert clock.out_of_time(with_final_validation=True)
    assert not clock.out_of_time(with_final_validation=False)  # without validation cases, 2 s still fit
    now.t = deadline - 12.5
    assert not clock.out_of_time(with_final_validation=True)
    now.t = deadline - 1.0
    assert clock.out_of_time(with_final_validation=False)


def test_the_learning_rate_progress_is_the_share_of_training_time_spent(now):
    clock = Clock(now(), 104 + END_MARGIN_S, now=now)
    now.advance(4)
    clock.start_training()  # 100 s of training left before the deadline
    clock.record_validation(20.0)  # kept for the final validation: the schedule ends 20 s early
    assert clock.time_progress() == pytest.approx(0.0)
    now.advance(40)
    assert clock.time_progress() == pytest.approx(0.5)
    now.advance(40)
    assert clock.time_progress() == pytest.approx(1.0)
    now.advance(50)
    assert clock.time_progress() == 1.0  # capped past the deadline
    assert clock.remaining_s() == 0.0


def test_a_resumed_run_continues_the_schedule_where_the_earlier_runs_left_it(now):
    clock = Clock(now(), 100 + END_MARGIN_S, budget_before=50.0, now=now)
    clock.start_training()
    assert clock.time_progress() == pytest.approx(0.5)
    now.advance(25)
    assert clock.time_progress() == pytest.approx(0.75)
