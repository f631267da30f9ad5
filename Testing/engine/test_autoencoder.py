"""The autoencoder application: a tiny variational autoencoder trained in seconds, each inference mode through
the Predictor and the CLI, wrong inputs per mode, the PCA baseline and the loss, export/import as a package."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from naming import names, naming

from deepmed.applications.autoencoder import model_grid_input, model_grid_reconstruction, read_sequence
from deepmed.applications.demos.autoencoder import sphere_image
from deepmed.applications.whole_image import grid_of
from deepmed.errors import DeepMedError
from deepmed.evaluation.reconstruction_metrics import compare_with_pca, fit_pca, pca_reconstruct
from deepmed.inference.predictor import Predictor
from deepmed.losses.latent import LatentLoss, kl_to_standard_normal
from deepmed.training.driver import train

REPO = Path(__file__).resolve().parents[2]
CONFIG = {"app": "autoencoder",
          "task": {"input_size": [8, 8, 8], "latent_size": 3, "channels": [4, 8], "beta": 1e-3},
          "optimizer": {"name": "adamw", "lr": 0.01},
          "training": {"epochs": 4, "iterations_per_epoch": 15, "batch_size": 4, "val_every": 1, "device": "cpu"}}


def _oblique(image: sitk.Image) -> sitk.Image:
    """The same voxels on a rotated, anisotropic, shifted grid (geometry must survive reconstruction)."""
    image = sitk.Image(image)
    image.SetSpacing([s * f for s, f in zip(image.GetSpacing(), (1.0, 1.3, 0.8))])
    angle = 0.4
    image.SetDirection([np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1])
    image.SetOrigin([12.5, -7.25, 3.0])
    return image


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("autoencoder")
    rng = np.random.default_rng(0)
    ids = [f"s{i:02d}" for i in range(12)]
    for case_id in ids:
        sitk.WriteImage(sphere_image(rng), str(folder / f"{case_id}.nii.gz"))
    sitk.WriteImage(_oblique(sphere_image(rng)), str(folder / "oblique.nii.gz"))
    manifest = folder / "spheres.csv"
    manifest.write_text("id,image\n" + "".join(f"{i},{i}.nii.gz\n" for i in ids))
    events = []
    model = train(manifest, folder / "model", config=json.loads(json.dumps(CONFIG)), progress=events.append)
    return folder, model, events


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-5)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6))


def test_training_saves_both_networks_and_a_card_with_the_modes(trained):
    _, model, events = trained
    card = json.loads((model / "model_card.json").read_text())
    assert card["application"] == "autoencoder" and card["output_kind"] == "scalar_volume"
    assert [m["name"] for m in card["modes"]] == ["reconstruct", "encode", "sample", "interpolate"]
    assert [m["inputs"] for m in card["modes"]] == ["images", "images", "none", "pair"]
    assert card["network"]["name"] == "vae" and card["network"]["args"]["latent_size"] == 3
    assert card["settings"]["input_size"] == [8, 8, 8] and card["output_grid"]["size"] == [8, 8, 8]
    assert card["inputs"][0]["normalization"] == "zscore" and card["inputs"][0]["statistics"]["std"] > 0
    from deepmed.model.weights import load_weights

    prefixes = {name.split(".")[0] for name in load_weights(model / "model.safetensors")}
    assert prefixes == {"encoder", "decoder"}
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 4 and epochs[-1]["loss"] < epochs[0]["loss"]
    assert any(e["event"] == "validation" and {"mse", "psnr"} <= set(e["metrics"]) for e in events)


def test_encode_gives_the_latent_vector_deterministically(trained):
    folder, model, _ = trained
    predictor = Predictor(model, "cpu")
    values = predictor.predict(folder / "s01.nii.gz", mode="encode").values
    assert list(values) == ["z0", "z1", "z2"] and all(isinstance(v, float) for v in values.values())
    assert predictor.predict(folder / "s01.nii.gz", mode="encode").values == values
    assert predictor.predict(folder / "s02.nii.gz", mode="encode").values != values


def test_reconstruct_lies_exactly_on_the_input_grid(trained):
    folder, model, _ = trained
    image = sitk.ReadImage(str(folder / "oblique.nii.gz"))
    output = Predictor(model, "cpu").predict(image).output  # the default mode
    assert output.GetSize() == image.GetSize()
    assert output.GetSpacing() == image.GetSpacing() and output.GetOrigin() == image.GetOrigin()
    assert output.GetDirection() == image.GetDirection()
    reconstruction, original = sitk.GetArrayFromImage(output), sitk.GetArrayFromImage(image)
    assert abs(reconstruction.mean() - original.mean()) < 0.5 * original.std()  # in the input's units


def test_sample_count_and_seed(trained):
    _, model, _ = trained
    predictor = Predictor(model, "cpu")
    frames = predictor.predict([], mode="sample", count=3, seed=7).frames
    grid = grid_of(predictor.card.output_grid)
    assert len(frames) == 3 and all(_same_grid(f, grid) for f in frames)
    again = predictor.predict([], mode="sample", count=3, seed=7).frames
    other = predictor.predict([], mode="sample", count=3, seed=8).frames
    arrays = lambda fs: np.stack([sitk.GetArrayFromImage(f) for f in fs])  # noqa: E731
    np.testing.assert_array_equal(arrays(frames), arrays(again))
    assert not np.allclose(arrays(frames), arrays(other))
    assert not np.allclose(arrays(frames)[0], arrays(frames)[1])
    assert len(predictor.predict([], mode="sample").frames) == 1  # the card's default count


def test_interpolate_runs_from_one_reconstruction_to_the_other(trained):
    folder, model, _ = trained
    predictor = Predictor(model, "cpu")
    a, b = folder / "s03.nii.gz", folder / "s04.nii.gz"
    frames = predictor.predict([a, b], mode="interpolate", steps=5).frames
    assert len(frames) == 5
    arrays = [sitk.GetArrayFromImage(f) for f in frames]
    card = predictor.card
    ends = [model_grid_reconstruction(predictor.networks, model_grid_input([p], card), card)[0] for p in (a, b)]
    np.testing.assert_allclose(arrays[0], ends[0], atol=1e-4)
    np.testing.assert_allclose(arrays[-1], ends[1], atol=1e-4)
    middle = np.abs(arrays[2] - ends[0]).mean()
    assert 0 < middle < np.abs(ends[1] - ends[0]).mean()  # on the way from A to B


@pytest.mark.parametrize("inputs, options, message", [
    ([], {"mode": "encode"}, ("(image)", "got 0")),
    (["s01"], {"mode": "sample"}, ("'sample'", "got 1")),
    (["s01"], {"mode": "interpolate"}, ("'interpolate'", "got 1")),
    (["s01", "s02"], {"mode": "interpolate", "steps": 1}, ("--steps", "2")),
    ([], {"mode": "sample", "count": 0}, ("--count", "1")),
    (["s01"], {"mode": "decode"}, ("'decode'", "reconstruct, encode, sample, interpolate")),
])
def test_wrong_inputs_per_mode_are_one_line(trained, inputs, options, message):
    folder, model, _ = trained
    with pytest.raises(DeepMedError, match=naming(*message)) as error:
        Predictor(model, "cpu").predict([folder / f"{i}.nii.gz" for i in inputs], **options)
    assert "\n" not in str(error.value)


def _cli(*args):
    """``deepmed ARGS`` in this process (imports once): returncode, stdout, stderr."""
    from deepmed.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*map(str, args), "--progress", "none"])
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_every_mode_from_the_command_line(trained, tmp_path):
    folder, model, _ = trained
    code = tmp_path / "code.csv"
    run = _cli("infer", "--model", model, "--mode", "encode", folder / "s05.nii.gz", "-o", code)
    assert run.returncode == 0, run.stderr
    rows = list(csv.reader(code.open()))
    assert rows[0] == ["z0", "z1", "z2"] and run.stdout.splitlines()[0].startswith("z0: ")
    expected = Predictor(model, "cpu").predict(folder / "s05.nii.gz", mode="encode").values
    np.testing.assert_allclose([float(v) for v in rows[1]], list(expected.values()), rtol=1e-6)
    vector = tmp_path / "code.npy"
    assert _cli("infer", "--model", model, "--mode", "encode", folder / "s05.nii.gz", "-o", vector).returncode == 0
    np.testing.assert_allclose(np.load(vector), list(expected.values()), rtol=1e-6)

    recon = tmp_path / "recon.nii.gz"
    run = _cli("infer", "--model", model, folder / "oblique.nii.gz", "-o", recon)
    assert run.returncode == 0, run.stderr
    assert _same_grid(sitk.ReadImage(str(recon)), sitk.ReadImage(str(folder / "oblique.nii.gz")))

    samples = [tmp_path / "s1.nii.gz", tmp_path / "s2.nii.gz"]
    for path in samples:
        run = _cli("infer", "--model", model, "--mode", "sample", "--count", 2, "--seed", 3, "-o", path)
        assert run.returncode == 0, run.stderr
    first, second = (read_sequence(p) for p in samples)
    assert len(first) == 2 and _same_grid(first[0], grid_of(json.loads((model / "model_card.json").read_text())
                                                             ["output_grid"]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(first[1]), sitk.GetArrayFromImage(second[1]))

    line = tmp_path / "line.nii.gz"
    run = _cli("infer", "--model", model, "--mode", "interpolate", "--steps", 4, folder / "s03.nii.gz",
               folder / "s04.nii.gz", "-o", line)
    assert run.returncode == 0, run.stderr
    assert sitk.ReadImage(str(line)).GetSize()[3] == 4 and len(read_sequence(line)) == 4
    as_nrrd = tmp_path / "line.nrrd"  # what the Slicer Run panel asks for
    assert _cli("infer", "--model", model, "--mode", "interpolate", "--steps", 4, folder / "s03.nii.gz",
                folder / "s04.nii.gz", "-o", as_nrrd).returncode == 0
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_sequence(as_nrrd)[2]),
                                  sitk.GetArrayFromImage(read_sequence(line)[2]))

    batch = tmp_path / "codes"
    run = _cli("infer", "--model", model, "--mode", "encode", folder, "-o", batch)
    assert run.returncode == 0, run.stderr
    table = list(csv.DictReader((batch / "results.csv").open()))
    assert len(table) == 13 and set(table[0]) == {"case", "z0", "z1", "z2"}


def test_command_line_refusals_are_one_line(trained, tmp_path):
    folder, model, _ = trained
    for args, message in [
        (["--mode", "interpolate", folder / "s01.nii.gz"], ("'interpolate'",)),
        (["--mode", "sample", "--count", 0], ("--count", "got 0")),
        (["--mode", "sample"], ("out.csv",)),  # -o below ends in .csv: a sequence is one 4D image
    ]:
        run = _cli("infer", "--model", model, *args, "-o", tmp_path / "out.csv")
        assert run.returncode != 0 and names(run.stderr, *message), run.stderr
        assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out.csv").exists()
    run = subprocess.run([sys.executable, "-m", "deepmed", "infer", "--model", str(model), "--mode", "interpolate",
                          str(folder / "s01.nii.gz"), "-o", str(tmp_path / "line.nii.gz")],
                         capture_output=True, text=True, cwd=REPO)  # a real process: exit status, no traceback
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "takes two cases" in run.stderr, run.stderr


def test_export_and_import_as_a_package(trained, tmp_path, monkeypatch):
    from deepmed.zoo.package import export_package, import_package

    folder, model, _ = trained
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    installed = import_package(export_package(model, tmp_path / "ae.zip", licence="CC-BY-4.0"))
    image = folder / "s06.nii.gz"
    assert Predictor(installed.path, "cpu").predict(image, mode="encode").values == \
        Predictor(model, "cpu").predict(image, mode="encode").values
    first = Predictor(installed.path, "cpu").predict([], mode="sample", seed=2).frames[0]
    second = Predictor(model, "cpu").predict([], mode="sample", seed=2).frames[0]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(first), sitk.GetArrayFromImage(second))


def test_a_plain_autoencoder_offers_no_sampling(tmp_path, trained):
    folder, _, _ = trained
    config = json.loads(json.dumps(CONFIG))
    config["task"]["variational"] = False
    config["training"]["epochs"] = 1
    model = train(folder / "spheres.csv", tmp_path / "plain", config=config, progress="none")
    predictor = Predictor(model, "cpu")
    assert [m.name for m in predictor.modes] == ["reconstruct", "encode", "interpolate"]
    assert predictor.card.settings["beta"] == 0.0
    with pytest.raises(DeepMedError, match="has no mode 'sample'"):
        predictor.predict([], mode="sample")


def test_pca_baseline_is_exact_on_linear_data_and_checks_its_size():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 50))
    train_rows, test_rows = rng.normal(size=(20, 2)) @ basis + 3.0, rng.normal(size=(5, 2)) @ basis + 3.0
    mean, axes = fit_pca(train_rows, 2)
    np.testing.assert_allclose(pca_reconstruct(test_rows, mean, axes), test_rows, atol=1e-9)
    noisy = test_rows + rng.normal(scale=0.1, size=test_rows.shape)
    result = compare_with_pca(train_rows, noisy, noisy, 2, data_range=10.0)  # a "model" that keeps the noise too
    assert result["better"] and result["model"]["mse"] == pytest.approx(0.0, abs=1e-20)
    assert 0.005 < result["pca"]["mse"] < 0.01  # the noise off the plane: 48 of 50 dimensions of variance 0.01
    assert result["pca"]["psnr"] == pytest.approx(10 * np.log10(100 / result["pca"]["mse"]), rel=0.05)
    worse = compare_with_pca(train_rows, test_rows, test_rows + 1.0, 2, data_range=10.0)
    assert not worse["better"] and worse["model"]["mse"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=naming("20 cases", "got 21")):
        fit_pca(train_rows, 21)


def test_the_loss_is_reconstruction_plus_beta_kl():
    mean, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    assert kl_to_standard_normal(mean, logvar).item() == pytest.approx(0.0)
    mean = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, np.log(2.0)], [0.0, 0.0]], dtype=torch.float32)
    # per case: 0.5 * sum(exp(lv) + m^2 - 1 - lv) = 0.5 * (1 + (2 - 1 - ln 2)) for the first, 0 for the second
    expected = 0.5 * (1 + 1 - np.log(2.0)) / 2
    assert kl_to_standard_normal(mean, logvar).item() == pytest.approx(expected, rel=1e-6)
    image, output = torch.zeros(2, 1, 2, 2, 2), torch.full((2, 1, 2, 2, 2), 0.5)
    total, error, kl = LatentLoss("mse", beta=0.1)(output, image, mean, logvar)
    assert error.item() == pytest.approx(0.25) and total.item() == pytest.approx(0.25 + 0.1 * expected, rel=1e-6)
    assert LatentLoss("l1", beta=0.0)(output, image, mean, logvar)[0].item() == pytest.approx(0.5)
    with pytest.raises(DeepMedError, match=naming("'mes'", "'mse'")):
        LatentLoss("mes")
