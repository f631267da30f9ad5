"""TensorBoard event files of a training: the scalars' tags and steps, read back with TensorBoard's own reader."""

from __future__ import annotations

import signal

import pytest
from naming import names
from test_training import TINY, write_tiny_dataset

from deepmed.errors import DeepMedInterrupted
from deepmed.progress import SilentReporter
from deepmed.training import tensorboard_log
from deepmed.training.driver import train
from deepmed.training.tensorboard_log import TENSORBOARD_DIR, TensorBoardReporter, with_tensorboard

pytest.importorskip("tensorboard", reason="tensorboard is in the test extra (pip install -e '.[test]')")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_training_stopped_mid_epoch_and_resumed_logs_each_step_once(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data")
    settings = TINY + ["training.epochs=3"]  # 2 iterations an epoch, validation every epoch
    losses, validations = {}, []

    def stop_in_second_epoch(event):
        if event["event"] == "validation":
            validations.append(event["metrics"])
        if event["event"] == "iteration":
            losses[(event["epoch"], event["iteration"])] = event["loss"]
            if (event["epoch"], event["iteration"]) == (1, 0):
                signal.raise_signal(signal.SIGINT)

    with pytest.raises(DeepMedInterrupted):
        train(manifest, tmp_path / "model", overrides=settings, progress=stop_in_second_epoch)
    first_run = read_scalars(tmp_path / "model" / TENSORBOARD_DIR)
    assert [step for step, _ in first_run["train/loss"]] == [1, 2, 3]

    def record(event):
        if event["event"] == "validation":
            validations.append(event["metrics"])
        if event["event"] == "iteration":
            losses[(event["epoch"], event["iteration"])] = event["loss"]

    train(manifest, tmp_path / "model", resume=True, progress=record)
    scalars = read_scalars(tmp_path / "model" / TENSORBOARD_DIR)
    metrics = {f"validation/{name}" for name, value in validations[0].items() if isinstance(value, float)}
    assert "validation/mean_dice" in metrics and len(validations) == 3
    assert set(scalars) == {"train/loss", "train/lr", "epoch/loss", "epoch/seconds"} | metrics
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]  # the resumed epoch's step 3 once
    assert [value for _, value in scalars["train/loss"]] == pytest.approx(
        [losses[(e, i)] for e in range(3) for i in range(2)], rel=1e-6)
    assert [step for step, _ in scalars["train/lr"]] == [1, 2, 3, 4, 5, 6]
    lrs = [value for _, value in scalars["train/lr"]]
    assert lrs[0] > lrs[-1] > 0  # the schedule decays
    for tag in ("epoch/loss", "validation/mean_dice"):
        assert [step for step, _ in scalars[tag]] == [2, 4, 6]  # at each epoch's last iteration
    assert [value for _, value in scalars["validation/mean_dice"]] == pytest.approx(
        [v["mean_dice"] for v in validations], rel=1e-6)


def test_resumed_writer_drops_steps_logged_after_the_checkpoint(tmp_path):
    """A run that crashed after its checkpoint had logged steps 5-6; the resumed run logs them again, once."""
    crashed = TensorBoardReporter(tmp_path, iterations_per_epoch=2)
    for epoch, iteration in ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)):
        crashed.emit("iteration", epoch=epoch, iteration=iteration, loss=1.0, lr=0.1)
    crashed.close()
    resumed = TensorBoardReporter(tmp_path, iterations_per_epoch=2, resume_step=4)
    resumed.emit("iteration", epoch=2, iteration=0, loss=0.5, lr=0.1)
    resumed.emit("iteration", epoch=2, iteration=1, loss=0.25, lr=0.1)
    resumed.emit("validation", epoch=2, metrics={"dice": 0.75, "per_class": [0.5], "bad": float("nan")})
    resumed.close()
    scalars = read_scalars(tmp_path)
    assert scalars["train/loss"] == [(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0), (5, 0.5), (6, 0.25)]
    assert scalars["validation/dice"] == [(6, 0.75)]
    assert "validation/bad" not in scalars and "validation/per_class" not in scalars  # only finite numbers


def test_without_tensorboard_training_says_one_info_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tensorboard_log, "tensorboard_available", lambda: False)
    monkeypatch.setattr(tensorboard_log, "_said_missing", False)
    reporter = SilentReporter()
    for _ in range(2):  # e.g. two folds of a cross-validation in one process
        assert with_tensorboard(reporter, tmp_path, 2) == (reporter, None)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and names(err, "tensorboard", "not installed")
    assert not (tmp_path / TENSORBOARD_DIR).exists()
