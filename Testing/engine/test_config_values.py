"""``--set`` values and config files are read as YAML 1.2 scalars (``1e-4`` is a number, ``on`` a string)."""

from __future__ import annotations

import math

import pytest
import yaml
from naming import naming
from test_training import TINY, write_tiny_dataset

from deepmed.cli.main import main
from deepmed.errors import DeepMedError
from deepmed.training.config import load_config_file, parse_value, resolve_config
from deepmed.training.driver import train

PARSED = [
    ("1e-4", 1e-4), ("5e-05", 5e-05), ("1E+3", 1000.0), (".5", 0.5), ("-.5", -0.5), ("1.", 1.0), ("3", 3),
    ("-7", -7), ("017", 17), ("0o17", 15), ("0x1F", 31), (".inf", math.inf), ("-.Inf", -math.inf),
    ("true", True), ("False", False), ("null", None), ("~", None), ("", None),
    ("on", "on"), ("off", "off"), ("yes", "yes"), ("inf", "inf"), ("nan", "nan"), ("unet", "unet"),
    ("2024-01-01", "2024-01-01"), ("1_000", "1_000"), ("'1e-4'", "1e-4"),
    ("[96, 96, 64]", [96, 96, 64]), ("[1e-4, .5, on, true]", [1e-4, 0.5, "on", True]),
]


@pytest.mark.parametrize("text, expected", PARSED)
def test_set_values_follow_yaml_1_2(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_nan_is_spelled_dot_nan():
    assert math.isnan(parse_value(".nan")) and parse_value("nan") == "nan"


def test_set_scientific_numbers_and_on_off_strings_validate():
    config = resolve_config({}, ["optimizer.lr=1e-4", "optimizer.weight_decay=5e-05", "training.amp=on"])
    assert config["optimizer"]["lr"] == 1e-4 and config["optimizer"]["weight_decay"] == 5e-05
    assert config["training"]["amp"] == "on"
    with pytest.raises(DeepMedError, match=naming("'optimizer.lr'", "'fast'")):
        resolve_config({}, ["optimizer.lr=fast"])


def test_config_file_reads_1e_4_as_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  lr: 1e-4\ntraining:\n  amp: off\n  epochs: 010\n")
    assert yaml.safe_load(path.read_text())["optimizer"]["lr"] == "1e-4"  # what PyYAML (YAML 1.1) gives
    config = resolve_config(load_config_file(path))
    assert config["optimizer"]["lr"] == 1e-4 and config["training"]["amp"] == "off"
    assert config["training"]["epochs"] == 10


def test_set_lr_1e_4_trains(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", n=3)
    out = train(manifest, tmp_path / "m", overrides=TINY + ["training.epochs=1", "optimizer.lr=1e-4"],
                progress="none")
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["optimizer"]["lr"] == pytest.approx(1e-4)
    assert (out / "checkpoints" / "last").is_dir()


def test_cli_accepts_set_lr_1e_4(tmp_path, capsys):
    """The command line reaches training (stopped at the dataset) instead of refusing the number."""
    code = main(["train", "--dataset", str(tmp_path / "missing.json"), "--out", str(tmp_path / "m"),
                 "--set", "optimizer.lr=1e-4"])
    err = capsys.readouterr().err
    assert code == 2 and "optimizer.lr" not in err and "missing.json" in err
