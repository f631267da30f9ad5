"""What a training is asked to do (TrainRequest) reaches the configuration as typed values, and the stop file
and the start time are parameters of the run, not process globals. Fast: no training."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from deepmed.errors import DeepMedError
from deepmed.training.prepare import run_config
from deepmed.training.request import TrainRequest
from deepmed.training.stop import StopRequest


def test_typed_options_reach_the_configuration_as_typed_values_after_the_overrides():
    request = TrainRequest(dataset="d.json", out="m", app="regression", epochs=3, device="cpu", fold=1,
                           time_limit="10m", init="lib-id", init_fold=0, overrides=["training.epochs=9"])
    values = request.typed_settings()
    assert values == {"app": "regression", "training.epochs": 3, "training.device": "cpu", "training.fold": 1,
                      "training.time_limit": "10m", "training.init": "lib-id", "training.init_fold": 0}
    cfg = run_config({"training": {"seed": 4}}, request.overrides, values)
    assert cfg["app"] == "regression" and cfg["training"]["epochs"] == 3  # the option wins over --set
    assert cfg["training"]["seed"] == 4 and cfg["training"]["fold"] == 1 and cfg["training"]["init"] == "lib-id"


def test_a_string_that_looks_like_a_number_stays_a_string_when_given_as_a_typed_value():
    """No typed value passes through --set text: an init id "007" is not read back as the number 7."""
    cfg = run_config(None, (), TrainRequest(dataset="d", out="m", init="007").typed_settings())
    assert cfg["training"]["init"] == "007"
    with pytest.raises(DeepMedError, match="training.init"):  # the same text through --set is a number
        run_config(None, ["training.init=007"])


def test_a_bad_typed_value_is_a_config_error_naming_the_key():
    with pytest.raises(DeepMedError, match="training.epochs"):
        run_config(None, (), {"training.epochs": 0})
    with pytest.raises(DeepMedError, match="training.init_fold"):
        run_config(None, (), {"training.init_fold": -1})


def test_extend_sets_the_time_limit_and_resume_with_extend_is_refused():
    assert TrainRequest(dataset="d", out="m", extend="5m", time_limit="1h").typed_settings()[
        "training.time_limit"] == "5m"
    assert TrainRequest(dataset="d", out="m", resume=True).continuing == "resume"
    with pytest.raises(DeepMedError, match="--resume"):
        TrainRequest(dataset="d", out="m", resume=True, extend="5m").continuing  # noqa: B018


def test_a_request_is_frozen_and_a_fold_is_a_new_request():
    request = TrainRequest(dataset="d", out="m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.epochs = 3
    fold = dataclasses.replace(request, out=request.out / "fold_0", fold=0)
    assert request.fold is None and fold.fold == 0 and str(fold.out).endswith("fold_0")


def test_the_start_time_is_the_callers_or_now():
    before = time.time()
    assert TrainRequest(dataset="d", out="m", started_at=12.5).started_at == 12.5
    assert before <= TrainRequest(dataset="d", out="m").started_at <= time.time()
    assert TrainRequest(dataset="d", out="m", started_at=None).started_at >= before


def test_the_stop_file_is_a_parameter_not_an_environment_variable(tmp_path, monkeypatch):
    stop_file = tmp_path / "stop"
    monkeypatch.setenv("DEEPMED_STOP_FILE", str(tmp_path / "ignored"))
    (tmp_path / "ignored").touch()
    assert not StopRequest().requested  # the environment asks nothing
    request = StopRequest(stop_file)
    assert not request.requested
    stop_file.touch()
    assert request.requested
    assert str(TrainRequest(dataset="d", out="m", stop_file="rel/stop").stop_file) == os.path.abspath("rel/stop")


def test_the_command_line_hands_its_start_time_and_stop_file_to_the_run(tmp_path, monkeypatch):
    import deepmed.training.driver as driver
    from deepmed.cli import main as cli

    seen = []
    monkeypatch.setattr(driver, "train", lambda request: seen.append(request) or request.out)
    monkeypatch.delenv("DEEPMED_STOP_FILE", raising=False)
    assert cli.main(["train", "--dataset", str(tmp_path / "d.json"), "--out", str(tmp_path / "m"), "--epochs", "3",
                     "--stop-file", str(tmp_path / "stop"), "--progress", "none"]) == 0
    request = seen[0]
    assert request.started_at == cli.STARTED_AT and request.stop_file == tmp_path / "stop"
    assert request.epochs == 3 and "DEEPMED_STOP_FILE" not in os.environ
