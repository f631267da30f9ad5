"""``deepmed list choices --json``: the Train panel's one worker answer equals the per-application lists."""

from __future__ import annotations

import json

from deepmed.cli.main import main
from deepmed.training.config import DEFAULTS


def test_choices_hold_every_trainable_application_with_its_networks_and_losses(capsys):
    assert main(["list", "choices", "--json"]) == 0
    choices = json.loads(capsys.readouterr().out)
    assert main(["list", "applications", "--trainable", "--json"]) == 0
    applications = json.loads(capsys.readouterr().out)
    assert choices["applications"] == applications and next(iter(applications)) == DEFAULTS["app"]
    for application in applications:
        for what in ("networks", "losses"):
            assert main(["list", what, "--app", application, "--json"]) == 0
            assert choices[what][application] == json.loads(capsys.readouterr().out), (what, application)
    assert "dice_ce" in choices["losses"]["segmentation"]
