"""The conditional GAN application (``cgan``): two networks and two optimisers in one step, checkpointed and
resumed; generation from condition values on the card's grid (API and CLI); one-line errors; zoo packages; and
a short training whose generated spheres follow the requested radius and shift."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from naming import names, naming

from deepmed.applications import StepContext, get_application
from deepmed.applications.demos.conditional_gan import measure_generation, write_spheres
from deepmed.data.manifest import Dataset
from deepmed.errors import DeepMedError
from deepmed.inference.predictor import Predictor
from deepmed.model.weights import load_weights
from deepmed.training.checkpoint import load_checkpoint
from deepmed.training.driver import train

REPO = Path(__file__).resolve().parents[2]
TINY = ["app=cgan", "task.conditions=[radius, shift]", "task.units=[mm, mm]", "task.image_size=16",
        "task.generator_channels=8", "task.discriminator_channels=8", "training.batch_size=4",
        "training.iterations_per_epoch=3", "training.val_every=1", "training.device=cpu", "training.val_fraction=0.25"]


@pytest.fixture(scope="module")
def spheres(tmp_path_factory):
    return write_spheres(tmp_path_factory.mktemp("spheres"), n_cases=12)


@pytest.fixture(scope="module")
def model(spheres, tmp_path_factory):
    return train(spheres, tmp_path_factory.mktemp("cgan") / "model", overrides=TINY, epochs=2, progress="none")


def _cli(*args) -> subprocess.CompletedProcess:
    """``python -m deepmed ARGS`` in its own process (what the whole process prints)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "SlicerDeepMed")}
    return subprocess.run([sys.executable, "-m", "deepmed", *map(str, args)], env=env, capture_output=True, text=True)


def _main(capsys, *args) -> subprocess.CompletedProcess:
    """The same command line in this process (what ``python -m deepmed`` runs, without ~4 s of start-up)."""
    from deepmed.cli.main import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def test_one_step_trains_both_networks(spheres):
    from deepmed.planning.planner import make_plan
    from deepmed.training.config import resolve_config

    app = get_application("cgan")
    config = resolve_config({}, TINY)
    dataset = Dataset.load(spheres)
    loaded = app.load_cases(dataset.training[:4])
    plan = make_plan(app, app.fingerprint(loaded, dataset), config, "cpu")
    data = app.prepare_data(loaded, [], dataset, plan, config)
    parts = app.build_parts(plan, config, data.fitted)
    assert set(parts.networks) == set(parts.optimizers) == {"generator", "discriminator"}
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in parts.networks.items()}
    batch = {key: torch.stack([torch.as_tensor(item[key]) for item in data.train]) for key in ("image", "condition")}
    losses = app.train_step(parts, batch, StepContext(torch.device("cpu"), amp=False))
    assert {"loss", "d_loss"} <= set(losses) and all(np.isfinite(v) for v in losses.values())
    for name, net in parts.networks.items():
        changed = [not torch.equal(a, b) for a, b in zip(before[name], net.parameters())]
        assert sum(changed) >= len(changed) // 2, f"{name}: {sum(changed)} of {len(changed)} tensors changed"
    # the images are on the planned grid, intensities and conditions in [-1, 1]
    item = data.train[0]
    assert item["image"].shape == (1, 16, 16, 16) and item["image"].min() >= -1 and item["image"].max() <= 1
    assert plan["grid"]["size"] == [16, 16, 16] and np.allclose(plan["grid"]["spacing"], 4.0)
    assert item["condition"].min() >= -1 and item["condition"].max() <= 1


def test_both_parts_are_checkpointed_and_a_resumed_run_retraces_the_straight_one(spheres, model, tmp_path):
    weights, state = load_checkpoint(model / "checkpoints" / "last", "cpu")
    assert {k.split(".")[0] for k in weights} == {"generator", "discriminator"}
    assert set(state["optimizers"]) == {"generator", "discriminator"}
    assert all(state["optimizers"][k]["state"] for k in state["optimizers"])  # Adam moments of both
    assert {k.split(".")[0] for k in load_weights(model / "model.safetensors")} == {"generator"}  # inference part
    constant = TINY + ["scheduler.name=none"]  # the same learning rate whatever the planned number of epochs
    straight = train(spheres, tmp_path / "straight", overrides=constant, epochs=3, progress="none")
    first = train(spheres, tmp_path / "resumed", overrides=constant, epochs=2, progress="none")
    resumed = train(spheres, first, epochs=3, resume=True, progress="none")
    a, _ = load_checkpoint(straight / "checkpoints" / "last", "cpu")
    b, state = load_checkpoint(resumed / "checkpoints" / "last", "cpu")
    assert state["trainer"]["epoch"] == 3
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_the_card_declares_the_conditions_the_grid_and_the_mode(model):
    card = json.loads((model / "model_card.json").read_text())
    assert card["application"] == "cgan" and card["output_kind"] == "image" and card["inputs"] == []
    assert card["modes"][0]["inputs"] == "conditions" and card["modes"][0]["output_kind"] == "image"
    names = [c["name"] for c in card["conditions"]]
    assert names == ["radius", "shift"] and card["conditions"][0]["unit"] == "mm"
    assert 6 <= card["conditions"][0]["min"] < card["conditions"][0]["max"] <= 16
    assert card["output_grid"]["size"] == [16, 16, 16]


def test_generation_lies_on_the_cards_grid_and_follows_the_seed(model):
    predictor = Predictor(model, "cpu")
    grid = predictor.card.output_grid
    image = predictor.predict([], condition=[10, 0], seed=3).output
    assert list(image.GetSize()) == grid["size"]
    assert image.GetSpacing() == pytest.approx(grid["spacing"]) and image.GetOrigin() == pytest.approx(grid["origin"])
    assert image.GetDirection() == pytest.approx(grid["direction"])
    again = predictor.predict([], condition=[10, 0], seed=3).output
    other = predictor.predict([], condition=[10, 0], seed=4).output
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(again))
    assert not np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(other))
    with pytest.raises(DeepMedError, match=naming("radius, shift", "2", "got 1")):
        predictor.predict([], condition=[10])


def test_infer_cli_writes_the_volume_on_the_declared_grid(model, tmp_path, capsys):
    grid = json.loads((model / "model_card.json").read_text())["output_grid"]
    out = tmp_path / "gen.nii.gz"
    run = _main(capsys, "infer", "--model", model, "--condition", "8,-3", "--seed", "1", "-o", out, "--progress", "none")
    assert run.returncode == 0, run.stderr
    image = sitk.ReadImage(str(out))
    assert list(image.GetSize()) == grid["size"]
    assert np.allclose(image.GetSpacing(), grid["spacing"], atol=1e-5)
    assert np.allclose(image.GetOrigin(), grid["origin"], atol=1e-4)
    assert np.allclose(image.GetDirection(), grid["direction"], atol=1e-6)
    several = tmp_path / "several.nii.gz"
    run = _main(capsys, "infer", "--model", model, "--condition", "8,-3", "--count", "3", "-o", several, "--progress", "none")
    assert run.returncode == 0, run.stderr
    stack = sitk.GetArrayFromImage(sitk.ReadImage(str(several)))
    assert stack.shape == (3, 16, 16, 16)  # seed 0's first sample comes first
    assert not np.array_equal(stack[0], stack[1])


def test_wrong_conditions_are_one_line_and_out_of_range_warns(model, tmp_path, capsys):
    run = _cli("infer", "--model", model, "--condition", "8", "-o", tmp_path / "x.nii.gz", "--progress", "none")
    assert run.returncode != 0 and "Traceback" not in run.stderr  # the whole process prints one line
    assert len(run.stderr.strip().splitlines()) == 1
    assert names(run.stderr, "radius, shift", "got 1")
    assert not (tmp_path / "x.nii.gz").exists()
    run = _main(capsys, "infer", "--model", model, "-o", tmp_path / "y.nii.gz", "--progress", "none")
    assert run.returncode != 0 and "got none" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    run = _main(capsys, "infer", "--model", model, "--condition", "40,0", "-o", tmp_path / "z.nii.gz",
                "--progress", "none")
    assert run.returncode == 0 and names(run.stderr, "radius=40", "training range")


def test_cases_without_condition_values_are_refused_in_one_line(tmp_path):
    manifest = write_spheres(tmp_path, n_cases=3)
    data = json.loads(manifest.read_text())
    data["training"][1]["value"] = "big"
    manifest.write_text(json.dumps(data))
    with pytest.raises(DeepMedError, match=naming("ball_001", "'value'")):
        train(manifest, tmp_path / "m", overrides=TINY, epochs=1, progress="none")
    data["training"][1]["value"] = [1.0]
    manifest.write_text(json.dumps(data))
    with pytest.raises(DeepMedError, match=naming("got 1, 2")):
        train(manifest, tmp_path / "m", overrides=TINY, epochs=1, progress="none")


def test_zoo_export_and_import(model, tmp_path):
    from deepmed.zoo.package import export_package, import_package

    package = export_package(model, tmp_path / "spheres.zip", model_id="spheres-cgan", licence="CC0-1.0")
    installed = import_package(package, library=tmp_path / "library")
    predictor = Predictor(installed.path, "cpu")
    generated = predictor.predict([], condition=[12, 4], seed=0).output
    original = Predictor(model, "cpu").predict([], condition=[12, 4], seed=0).output
    assert np.array_equal(sitk.GetArrayFromImage(generated), sitk.GetArrayFromImage(original))


@pytest.mark.slow
def test_a_short_training_generates_spheres_that_follow_the_conditions(tmp_path):
    """~40 s on one CPU core: 16^3 volumes, 160 steps; radius and shift measured in generated images."""
    manifest = write_spheres(tmp_path / "data", n_cases=32)
    settings = [s for s in TINY if not s.startswith(("training.iterations", "task.generator", "task.discriminator"))]
    model = train(manifest, tmp_path / "model", overrides=settings + [
        "training.iterations_per_epoch=20", "training.batch_size=8", "task.generator_channels=32",
        "task.discriminator_channels=16", "training.val_every=8", "scheduler.name=none"], epochs=8,
        progress="none")
    predictor = Predictor(model, "cpu")
    measured = measure_generation(predictor, [6, 8.5, 11, 13.5, 16], [-12, -6, 0, 6, 12], [0],
                                  predictor.card.settings["threshold"])
    print(f"r radius {measured['r_radius']:.3f}, r shift {measured['r_shift']:.3f}")
    assert measured["r_radius"] >= 0.8 and measured["r_shift"] >= 0.8, measured
