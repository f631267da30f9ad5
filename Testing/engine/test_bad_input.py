"""Bad input: config errors listed at once with "did you mean", one-line errors, exit 2, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from naming import names
from test_training import TINY, write_tiny_dataset

from deepmed.cli.main import main
from deepmed.errors import DeepMedError
from deepmed.training.config import resolve_config


def test_config_problems_all_at_once_with_suggestions():
    with pytest.raises(DeepMedError) as info:
        resolve_config({"netwrok": {}, "training": {"epochs": "ten", "batchsize": 2}},
                       ["loss.name=dise", "data.patch_size=[16,16]"])
    lines = str(info.value).splitlines()
    text = "\n".join(lines)
    for tokens in [("'netwrok'", "'network'"), ("'training.epochs'", "'ten'"),
                   ("'training.batchsize'", "'batch_size'"), ("'data.patch_size'", "[16, 16]"),
                   ("loss.name", "'dise'", "'dice'")]:
        assert any(names(line, *tokens) for line in lines), (tokens, text)  # key and suggestion on one line
    assert len(lines) == 5
    with pytest.raises(DeepMedError) as info:
        resolve_config({}, ["network.name=unte", "loss.name=dise", "data.sampling=foregrund", "optimizer.lr=-1"])
    lines = str(info.value).splitlines()
    for tokens in [("network.name", "'unte'", "'unet'"), ("loss.name", "'dise'", "'dice'"),
                   ("data.sampling", "'foregrund'", "'foreground'"), ("'optimizer.lr'", "-1")]:
        assert any(names(line, *tokens) for line in lines), (tokens, lines)


def test_resolved_config_keeps_defaults_and_overrides():
    cfg = resolve_config({"training": {"epochs": 7}}, ["training.batch_size=4", "data.spacing=[1, 1, 2.5]"])
    assert cfg["training"]["epochs"] == 7 and cfg["training"]["batch_size"] == 4
    assert cfg["data"]["spacing"] == [1, 1, 2.5] and cfg["network"]["name"] == "unet"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "deepmed", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_train_config_errors_exit_2_one_line_each(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data")
    result = _cli("train", "--dataset", manifest, "--out", tmp_path / "m", "--set", "network.name=unte",
                  "--set", "training.epoch=3", "--progress", "none")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("deepmed: error: config:") for line in lines)
    assert not (tmp_path / "m").exists()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from deepmed.training.driver import train

    root = tmp_path_factory.mktemp("bad")
    manifest = write_tiny_dataset(root / "data")
    return manifest, train(manifest, root / "model", overrides=TINY + ["training.epochs=1"], progress="none")


def test_infer_bad_inputs(tiny_model, tmp_path, capsys):
    manifest, model_dir = tiny_model
    image = manifest.parent / "c0.nii.gz"
    cases = [
        (["--model", model_dir, image, image, "-o", tmp_path / "o.nii.gz"], ("(MR)", "got 2")),
        (["--model", tmp_path, image, "-o", tmp_path / "o.nii.gz"], (str(tmp_path), "model_card.json")),
        (["--model", model_dir, image, "-o", tmp_path / "nowhere" / "o.nii.gz"], (str(tmp_path / "nowhere"),)),
        (["--model", model_dir, "--app", "regression", image, "-o", tmp_path / "o.nii.gz"],
         ("segmentation", "regression")),
        (["--model", model_dir, tmp_path / "missing.nii.gz", "-o", tmp_path / "o.nii.gz"], ("missing.nii.gz",)),
    ]
    for args, message in cases:
        assert main(["infer", *map(str, args), "--progress", "none"]) == 2
        err = capsys.readouterr().err
        assert names(err, *message) and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_missing_weights_and_existing_outputs(tiny_model, tmp_path, capsys):
    import shutil

    manifest, model_dir = tiny_model
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").unlink()
    image = manifest.parent / "c0.nii.gz"
    assert main(["infer", "--model", str(broken), str(image), "-o", str(tmp_path / "o.nii.gz")]) == 2
    assert names(capsys.readouterr().err, str(broken), "model.safetensors")
    existing = tmp_path / "keep.nii.gz"
    existing.write_bytes(b"user data")
    assert main(["infer", "--model", str(model_dir), str(image), "-o", str(existing)]) == 2
    assert names(capsys.readouterr().err, str(existing), "--force")
    assert existing.read_bytes() == b"user data"


def test_resume_needs_a_checkpoint_and_matching_app(tiny_model, tmp_path, capsys):
    manifest, model_dir = tiny_model
    assert main(["train", "--dataset", str(manifest), "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert names(capsys.readouterr().err, str(tmp_path / "new"), "checkpoint")
    assert main(["train", "--dataset", str(manifest), "--out", str(model_dir), "--resume", "--app", "regression"]) == 2
    assert names(capsys.readouterr().err, str(model_dir), "segmentation", "regression")


def test_segmentation_needs_labels(tmp_path, capsys):
    manifest = write_tiny_dataset(tmp_path / "data", regression=True)
    assert main(["train", "--dataset", str(manifest), "--out", str(tmp_path / "m"), "--progress", "none"]) == 2
    assert names(capsys.readouterr().err, "segmentation", "'labels'")
    data = json.loads(manifest.read_text())
    assert data["labels"] == {}


def test_registries_list_themselves(capsys):
    assert main(["list", "networks"]) == 0
    out = capsys.readouterr().out
    for name in ("unet", "segresnet", "dynunet", "swin_unetr", "unetr", "highresnet"):
        assert name in out
    assert main(["list", "losses"]) == 0
    out = capsys.readouterr().out
    for name in ("dice", "dice_ce", "dice_focal", "generalized_dice", "tversky", "generalized_wasserstein_dice",
                 "l1", "mse", "rmse", "huber"):
        assert name in out
