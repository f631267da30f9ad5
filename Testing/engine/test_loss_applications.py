"""The loss registry says which application each loss serves; configs with a misfitting loss are refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deepmed.applications import get_application
from deepmed.cli.main import main
from deepmed.errors import DeepMedError
from deepmed.losses import LOSSES, losses_for
from deepmed.training.config import resolve_config


def test_every_loss_declares_its_applications():
    assert losses_for("regression") == ["l1", "mse", "rmse", "huber"]
    assert losses_for("segmentation") == ["dice", "dice_ce", "dice_focal", "generalized_dice", "tversky",
                                          "generalized_wasserstein_dice", "cross_entropy"]
    assert losses_for("classification") == ["cross_entropy", "focal"]
    assert losses_for("case_regression") == losses_for("regression")
    from deepmed.applications import APPLICATIONS

    assert set().union(*(losses_for(app) for app in APPLICATIONS.names())) == set(LOSSES.names())  # none orphaned
    assert LOSSES.metadata("DICE") == {"applications": ("segmentation", "interactive")}
    assert losses_for("interactive") == losses_for("segmentation")  # the interactive model trains as a segmentation


@pytest.mark.parametrize("app, loss", [("regression", "dice"), ("regression", "cross_entropy"),
                                       ("segmentation", "mse"), ("segmentation", "huber")])
def test_misfitting_loss_is_a_config_error(app, loss):
    with pytest.raises(DeepMedError) as info:
        resolve_config({"app": app}, [f"loss.name={loss}"])
    fitting = ", ".join(losses_for(app))
    assert str(info.value) == (f"config: loss.name: '{loss}' does not fit application '{app}'; "
                               f"choose one of: {fitting}")


@pytest.mark.parametrize("app, loss", [("regression", "huber"), ("segmentation", "dice_ce"),
                                       ("regression", "auto"), ("Segmentation", "Dice")])
def test_fitting_loss_resolves(app, loss):
    assert resolve_config({}, [f"app={app}", f"loss.name={loss}"])["loss"]["name"] == loss


def test_cli_misfitting_loss_one_line_exit_2(tmp_path):
    from test_training import write_tiny_dataset

    manifest = write_tiny_dataset(tmp_path / "data", n=2, regression=True)
    result = subprocess.run([sys.executable, "-m", "deepmed", "train", "--dataset", str(manifest), "--app",
                             "regression", "--out", str(tmp_path / "m"), "--set", "loss.name=dice"],
                            check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    expected = ("deepmed: error: config: loss.name: 'dice' does not fit application 'regression'; "
                "choose one of: l1, mse, rmse, huber")
    assert result.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "m").exists()


def test_list_losses_json(capsys):
    assert main(["list", "losses", "--app", "segmentation", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == losses_for("segmentation")
    assert main(["list", "networks", "--json"]) == 0
    networks = json.loads(capsys.readouterr().out)
    assert "unet" in networks and all(isinstance(v, str) and v for v in networks.values())
    assert main(["list", "losses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(LOSSES.names()) and lines[0].split()[0] == "cross_entropy"
    assert main(["list", "losses", "--app", "regression"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == losses_for("regression")
    assert main(["list", "networks", "--app", "regression", "--json"]) == 0  # the networks the panel offers
    assert json.loads(capsys.readouterr().out) == get_application("regression").network_choices()
    assert main(["list", "networks", "--app", "classification", "--json"]) == 0
    assert "unet" not in json.loads(capsys.readouterr().out)
    assert main(["list", "optimizers", "--app", "regression"]) == 2
    assert "--app" in capsys.readouterr().err
