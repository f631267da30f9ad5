"""The Trainer loop on its own (no driver, no files read): stop, resume, validation cadence, time-limit end.

A tiny linear network learns y = x·w on in-memory items; time is a fake clock that the tiny application moves
(each step and each validated case costs a set number of seconds), so the cadence decisions are exact.
"""

import types

import pytest
import torch

from deepmed.applications import Parts, PreparedData
from deepmed.errors import DeepMedInterrupted
from deepmed.model.directory import WEIGHTS
from deepmed.model.weights import split_networks
from deepmed.progress import make_reporter
from deepmed.training.checkpoint import load_checkpoint
from deepmed.training.clock import END_MARGIN_S, Clock
from deepmed.training.config import resolve_config
from deepmed.training.trainer import Trainer


class FakeTime:
    def __init__(self):
        self.t = 1000.0

    def time(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class TinyApp:
    """Only what the loop asks of an application: a step, a case's validation, their summary."""

    key_metric = "score"
    higher_is_better = True
    inference_networks = ("model",)

    def __init__(self, time: FakeTime, step_s: float = 1.0, case_s: float = 0.0):
        self.time, self.step_s, self.case_s = time, step_s, case_s
        self.steps = 0
        self.validated_cases = 0
        self.after_step = None  # called with the number of steps done (e.g. to ask for a stop)

    def train_step(self, parts, batch, step):
        net = parts.networks["model"]
        loss = torch.nn.functional.mse_loss(net(batch["x"]), batch["y"])
        step.optimize(loss, parts.optimizers["model"])
        self.steps += 1
        self.time.advance(self.step_s)
        if self.after_step is not None:
            self.after_step(self.steps)
        return {"loss": float(loss.detach())}

    def validate_case(self, parts, item, plan, fitted, device):
        self.validated_cases += 1
        self.time.advance(self.case_s)
        with torch.no_grad():
            error = float(torch.nn.functional.mse_loss(parts.network()(item["x"][None]), item["y"][None]))
        return {"score": -error}

    def summarize_validation(self, per_case):
        return {"score": sum(m["score"] for m in per_case) / len(per_case)}


def _items(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    xs = torch.randn(n, 4, generator=g)
    return [{"x": x, "y": (x @ w)[None]} for x in xs]


@pytest.fixture
def fake_time(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr("deepmed.training.trainer.time", types.SimpleNamespace(time=fake.time))
    return fake


@pytest.fixture
def build(tmp_path, fake_time):
    """``build(app, epochs=..., ...)`` -> a Trainer of a fresh tiny network (the one place that knows the
    Trainer's constructor, plan and configuration)."""

    def make(app, *, epochs=4, iterations=3, validate_every=1, validation_share=0.1, time_limit_s=None,
             val_cases=2, net_seed=0, events=None, folder="model", stop_file=None):
        (tmp_path / folder).mkdir(exist_ok=True)
        torch.manual_seed(net_seed)
        net = torch.nn.Linear(4, 1)
        parts = Parts({"model": net}, {"model": torch.optim.Adam(net.parameters(), lr=0.05)})
        data = PreparedData(train=_items(8, 1), val=_items(val_cases, 2))
        plan = {"application": "tiny", "device": "cpu", "schedule": {"iterations_per_epoch": iterations, "batch_size": 2, "lr": 0.05, "epochs": epochs,
                             "time_limit_s": time_limit_s, "validate_every": validate_every,
                             "validation_share": validation_share, "lr_schedule": "poly", "lr_peak": 1.0}}
        config = resolve_config({"training": {"seed": 7, "amp": "off", "early_stopping": 0},
                                 "data": {"num_workers": 0}})
        reporter = make_reporter((events if events is not None else []).append)
        clock = Clock(fake_time.time(), time_limit_s, now=fake_time.time)
        return Trainer(app=app, parts=parts, data=data, transform=None, plan=plan, config=config,
                       device=torch.device("cpu"), reporter=reporter, model_dir=tmp_path / folder, clock=clock,
                       stop_file=stop_file)

    return make


def _validated_epochs(state) -> list[int]:
    return [record["epoch"] for record in state.history if "score" in record]


# ---- validation cadence ---------------------------------------------------------------------------------
def test_validation_every_n_epochs_and_always_at_the_end(build, fake_time):
    app = TinyApp(fake_time)
    events = []
    state = build(app, epochs=5, validate_every=2, events=events).fit()
    assert _validated_epochs(state) == [2, 4, 5]
    assert app.validated_cases == 3 * 2
    assert [e["epoch"] for e in events if e["event"] == "validation"] == [1, 3, 4]
    assert [r["epoch"] for r in state.history] == [1, 2, 3, 4, 5]
    assert app.steps == 5 * 3


def test_auto_cadence_keeps_validation_to_its_share_of_the_time(build, fake_time):
    # an epoch: 2 steps of 1 s; a validation: 2 cases of 1 s. Share 0.25: a validation once 6 s trained.
    app = TinyApp(fake_time, step_s=1.0, case_s=1.0)
    state = build(app, epochs=9, iterations=2, validate_every="auto", validation_share=0.25).fit()
    assert _validated_epochs(state) == [1, 4, 7, 9]  # the first measures it; the last one always


def test_auto_cadence_validates_every_epoch_when_validation_is_cheap(build, fake_time):
    app = TinyApp(fake_time, step_s=1.0, case_s=0.01)
    state = build(app, epochs=4, iterations=2, validate_every="auto", validation_share=0.25).fit()
    assert _validated_epochs(state) == [1, 2, 3, 4]


def test_without_validation_cases_the_last_weights_are_kept(build, fake_time, tmp_path):
    app = TinyApp(fake_time)
    state = build(app, epochs=2, val_cases=0).fit()
    assert app.validated_cases == 0 and _validated_epochs(state) == []
    assert state.best_epoch == 1
    assert (tmp_path / "model" / WEIGHTS).is_file()


def test_the_best_weights_are_those_of_the_best_validation(build, fake_time, tmp_path):
    app = TinyApp(fake_time)
    trainer = build(app, epochs=4)
    state = trainer.fit()
    scores = [r["score"] for r in state.history]
    assert state.best_metric == max(scores) and state.best_epoch == scores.index(max(scores))
    assert (tmp_path / "model" / WEIGHTS).is_file()


# ---- a time budget ------------------------------------------------------------------------------------
def test_a_time_budget_ends_before_the_deadline_with_a_final_validation(build, fake_time):
    app = TinyApp(fake_time, step_s=1.0, case_s=1.0)
    events = []
    trainer = build(app, epochs=1, iterations=5, time_limit_s=40 + END_MARGIN_S, events=events)
    state = trainer.fit()
    finished = [e for e in events if e["event"] == "finished"][-1]
    assert finished["ended_by"] == "time"
    assert state.epoch > 1  # epochs do not bound a timed run
    assert "score" in state.history[-1]  # the final validation
    assert fake_time.time() <= trainer.clock.deadline  # ... inside the budget
    assert fake_time.time() >= trainer.clock.deadline - 2 * (1.0 + 2.0)  # and the budget was used
    assert trainer.learning_rate < 0.05 * 0.2  # the schedule followed the clock to near its end


# ---- stop ---------------------------------------------------------------------------------------------
def test_a_stop_request_ends_after_the_current_step_with_a_checkpoint(build, fake_time, tmp_path):
    app = TinyApp(fake_time)
    events = []
    trainer = build(app, epochs=4, iterations=3, events=events)
    app.after_step = lambda steps: setattr(trainer.stop, "requested", True) if steps == 5 else None
    with pytest.raises(DeepMedInterrupted):
        trainer.fit()
    assert app.steps == 5  # the step under way finished, no other began
    stopped = [e for e in events if e["event"] == "stopped"]
    assert len(stopped) == 1 and stopped[0]["epoch"] == 1 and stopped[0]["iteration"] == 2
    weights, state = load_checkpoint(tmp_path / "model" / "checkpoints" / "last")
    assert state["trainer"]["epoch"] == 1 and state["trainer"]["iteration"] == 2
    for name, tensor in trainer.parts.network().state_dict().items():
        assert torch.equal(weights[name], tensor)


def test_a_stop_file_appearing_stops_the_training(build, fake_time, tmp_path):
    app = TinyApp(fake_time)
    stop_file = tmp_path / "stop"
    trainer = build(app, epochs=4, iterations=3, stop_file=stop_file)  # a parameter, not the environment
    app.after_step = lambda steps: stop_file.touch() if steps == 4 else None
    with pytest.raises(DeepMedInterrupted):
        trainer.fit()
    assert app.steps == 4
    saved = load_checkpoint(tmp_path / "model" / "checkpoints" / "last")[1]["trainer"]
    assert (saved["epoch"], saved["iteration"]) == (1, 1)  # taken at the stop, mid-epoch


# ---- resume -------------------------------------------------------------------------------------------
def test_a_resumed_run_continues_where_it_stopped_and_retraces_the_uninterrupted_one(build, fake_time, tmp_path):
    whole = build(TinyApp(fake_time), epochs=4, iterations=3, folder="uninterrupted")
    whole_state = whole.fit()
    expected = {k: v.clone() for k, v in whole.parts.network().state_dict().items()}

    first = TinyApp(fake_time)
    stopped = build(first, epochs=4, iterations=3)
    first.after_step = lambda steps: setattr(stopped.stop, "requested", True) if steps == 5 else None
    with pytest.raises(DeepMedInterrupted):
        stopped.fit()

    weights, resume_state = load_checkpoint(tmp_path / "model" / "checkpoints" / "last")
    second = TinyApp(fake_time)
    events = []
    resumed = build(second, epochs=4, iterations=3, net_seed=99, events=events)  # other initial weights
    resumed.parts.network().load_state_dict(split_networks(weights, ["model"])["model"])
    state = resumed.fit(resume_state)

    assert second.steps == 4 * 3 - 5  # only the steps not done before the stop
    assert [e["start_epoch"] for e in events if e["event"] == "started"] == [1]
    assert [r["epoch"] for r in state.history] == [1, 2, 3, 4]  # the history continues, no epoch twice
    assert [r["score"] for r in state.history] == pytest.approx([r["score"] for r in whole_state.history], rel=1e-5)
    # the stopped epoch's mean loss covers all its iterations, before and after the resume
    assert [r["loss"] for r in state.history] == pytest.approx([r["loss"] for r in whole_state.history], rel=1e-5)
    for name, tensor in resumed.parts.network().state_dict().items():
        assert torch.allclose(tensor, expected[name], atol=1e-6), name
    adam = resumed.parts.optimizers["model"].state_dict()["state"]
    assert all(int(s["step"]) == 4 * 3 for s in adam.values())  # the optimiser state came with the checkpoint
