"""Each application plans its own batch size and learning rate (with reasons in plan.json); the configuration's
explicit values win; no demo overrides them. Frictions: demo folders and cross-validation folds are made."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from naming import naming
from test_case_level import write_cubes
from test_training import TINY, write_tiny_dataset

from deepmed.applications import get_application
from deepmed.applications.demos import demo_folder
from deepmed.applications.demos.autoencoder import sphere_image
from deepmed.applications.demos.conditional_gan import write_spheres
from deepmed.applications.demos.super_resolution import phantom
from deepmed.cli.main import main
from deepmed.data.manifest import Dataset
from deepmed.data.split import cross_validation_splits
from deepmed.errors import DeepMedError
from deepmed.planning.batch import STEP_VOXELS
from deepmed.training.config import resolve_config
from deepmed.training.driver import train
from deepmed.transforms.resolution import degrade

#: application -> (its own batch size, learning rate) for small inputs on a CPU
OWN = {"segmentation": (2, 1e-3), "regression": (2, 1e-3), "classification": (8, 3e-3),
       "case_regression": (8, 3e-3), "superres": (4, 2e-3), "autoencoder": (16, 3e-3), "cgan": (4, 5e-4)}


def _superres(folder):
    entries = []
    for seed in range(3):
        high = phantom(seed, 24)
        sitk.WriteImage(high, str(folder / f"p{seed}_high.nii.gz"))
        sitk.WriteImage(degrade(high, [2, 2, 2]), str(folder / f"p{seed}_low.nii.gz"))
        entries.append({"id": f"p{seed}", "image": f"p{seed}_low.nii.gz", "label": f"p{seed}_high.nii.gz"})
    (folder / "pairs.json").write_text(json.dumps({"name": "pairs", "training": entries}))
    return folder / "pairs.json", ["task.factor=[2,2,2]"]


def _autoencoder(folder):
    rng = np.random.default_rng(0)
    for i in range(4):
        sitk.WriteImage(sphere_image(rng), str(folder / f"s{i}.nii.gz"))
    (folder / "spheres.csv").write_text("id,image\n" + "".join(f"s{i},s{i}.nii.gz\n" for i in range(4)))
    return folder / "spheres.csv", []


DATASETS = {
    "segmentation": lambda folder: (write_tiny_dataset(folder), []),
    "regression": lambda folder: (write_tiny_dataset(folder, regression=True), []),
    "classification": lambda folder: (write_cubes(folder) / "classification.json", []),
    "case_regression": lambda folder: (write_cubes(folder) / "case_regression.json", []),
    "superres": _superres,
    "autoencoder": _autoencoder,
    "cgan": lambda folder: (write_spheres(folder, n_cases=4), ["task.conditions=[radius, shift]"]),
}


def _plan(capsys, manifest, app, settings):
    args = ["plan", str(manifest), "--app", app, "--device", "cpu", "--json"]
    assert main(args + [a for s in settings for a in ("--set", s)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("app", list(OWN))
def test_each_application_plans_its_own_batch_and_learning_rate_with_reasons(app, tmp_path, capsys):
    manifest, settings = DATASETS[app](tmp_path)
    plan = _plan(capsys, manifest, app, settings)
    assert (plan["schedule"]["batch_size"], plan["schedule"]["lr"]) == pytest.approx(OWN[app])
    for key in ("batch_size", "lr"):
        assert plan["reasons"][key].startswith(f"{get_application(app).name}: ")
    explicit = _plan(capsys, manifest, app, settings + ["training.batch_size=3", "optimizer.lr=0.02"])
    assert (explicit["schedule"]["batch_size"], explicit["schedule"]["lr"]) == (3, 0.02)
    assert "from the configuration" in explicit["reasons"]["batch_size"]
    assert "from the configuration" in explicit["reasons"]["lr"]


def test_the_applications_do_not_all_inherit_one_generic_default():
    assert len(set(OWN.values())) >= 4


def _case_level_draft(size: int, classes: list[str]) -> dict:
    """The classification entries of a planning draft (what ``plan()`` returns for a one-channel dataset)."""
    return {"channel_names": ["ct"], "spacing": [2.0] * 3, "input_size": [size] * 3, "normalization": ["ct"],
            "classes": classes, "class_values": list(range(len(classes)))}


def test_classification_takes_four_cases_per_class_and_a_large_input_fits_the_step_budget():
    app = get_application("classification")
    three = app.training_defaults(_case_level_draft(32, ["a", "b", "c"]), {}, "cpu")
    assert three.batch_size == 12 and three.lr == pytest.approx(3e-3)
    large = app.training_defaults(_case_level_draft(96, ["a", "b"]), {}, "cpu")
    assert large.batch_size == STEP_VOXELS["cpu"] // 96 ** 3 == 2
    assert large.lr == pytest.approx(3e-3 * np.sqrt(2 / 8), rel=1e-2) and "step budget" in large.batch_reason
    on_gpu = app.training_defaults(_case_level_draft(96, ["a", "b"]), {}, "cuda")
    assert on_gpu.batch_size == 8


def test_a_plan_missing_an_applications_entry_is_one_error_naming_plan_json_and_the_key():
    draft = _case_level_draft(32, ["a", "b"])
    del draft["input_size"]
    with pytest.raises(DeepMedError) as error:
        get_application("classification").training_defaults(draft, {}, "cpu")
    assert "plan.json" in str(error.value) and "input_size" in str(error.value)


def test_batch_and_lr_are_auto_by_default_and_checked_when_given():
    config = resolve_config({})
    assert config["training"]["batch_size"] == "auto" and config["optimizer"]["lr"] == "auto"
    assert resolve_config({}, ["training.batch_size=AUTO"])["training"]["batch_size"] == "auto"
    for setting, key in (("training.batch_size=2.5", "training.batch_size"), ("training.batch_size=0",
                         "training.batch_size"), ("optimizer.lr=fast", "optimizer.lr"), ("optimizer.lr=0",
                         "optimizer.lr"), ("training.batch_size=true", "training.batch_size")):
        with pytest.raises(DeepMedError, match=f"'{key}' must"):
            resolve_config({}, [setting])


def test_a_trained_model_keeps_the_planned_values_in_its_config(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data")
    out = train(manifest, tmp_path / "model", overrides=TINY + ["training.epochs=1"], progress="none")
    config = yaml.safe_load((out / "config.yaml").read_text())
    plan = json.loads((out / "plan.json").read_text())
    assert config["training"]["batch_size"] == plan["schedule"]["batch_size"] == 2
    assert config["optimizer"]["lr"] == plan["schedule"]["lr"] == pytest.approx(1e-3)
    assert plan["reasons"]["batch_size"].startswith("segmentation: ")


@pytest.mark.parametrize("module, name", [("deepmed.applications.demos.segmentation", "DEMO_CONFIG"),
                                          ("deepmed.applications.demos.case_level", "DEMO_CONFIG"),
                                          ("deepmed.applications.demos.autoencoder", "DEMO_CONFIG"),
                                          ("deepmed.applications.demos.conditional_gan", "DEMO_CONFIG"),
                                          ("deepmed.applications.demos.super_resolution", "COMMON")])
def test_no_demo_overrides_what_its_application_chooses(module, name):
    config = getattr(importlib.import_module(module), name)
    assert "batch_size" not in config.get("training", {}) and "lr" not in config.get("optimizer", {})


# ---- frictions -------------------------------------------------------------------------------------------
def test_a_demo_folder_is_created_with_its_parents(tmp_path):
    out = demo_folder(tmp_path / "a" / "b")
    assert out.is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeepMedError, match=naming(str(tmp_path / "file"))):
        demo_folder(tmp_path / "file")


def test_folds_are_made_beside_the_manifest_reused_and_checked(tmp_path):
    manifest = write_tiny_dataset(tmp_path, n=6)
    original = manifest.read_text()
    made = cross_validation_splits(Dataset.load(manifest), 3, seed=0)
    assert made.origin == "made" and made.path == tmp_path / "dataset.splits.json" and len(made.splits) == 3
    assert sorted(i for s in made.splits for i in s["val"]) == [f"c{i}" for i in range(6)]
    assert json.loads(made.path.read_text()) == made.splits and manifest.read_text() == original
    again = cross_validation_splits(Dataset.load(manifest), None, seed=7)  # --folds all: the saved ones
    assert again.origin == "saved" and again.splits == made.splits and "reusing" in again.note()
    with pytest.raises(DeepMedError, match=naming("--folds 5", "dataset.splits.json", "3")):
        cross_validation_splits(Dataset.load(manifest), 5)
    data = json.loads(original)
    data["training"] = data["training"][:5] + [dict(data["training"][5], id="new")]
    manifest.write_text(json.dumps(data))
    with pytest.raises(DeepMedError, match=naming("dataset.splits.json", "new")):
        cross_validation_splits(Dataset.load(manifest), None)


def test_train_folds_without_splits_makes_them_says_so_and_reuses_them(tmp_path, capsys):
    manifest = write_tiny_dataset(tmp_path / "data", n=4)
    settings = [a for s in TINY + ["training.epochs=1"] for a in ("--set", s)]
    args = ["train", "--dataset", str(manifest), "--folds", "2", "--progress", "none", *settings]
    assert main(args + ["--out", str(tmp_path / "cv1")]) == 0
    err = capsys.readouterr().err
    assert "made 2" in err and "dataset.splits.json" in err
    saved = json.loads((tmp_path / "data" / "dataset.splits.json").read_text())
    assert json.loads((tmp_path / "cv1" / "splits.json").read_text()) == saved
    assert "splits" not in json.loads(manifest.read_text())
    assert main(args + ["--out", str(tmp_path / "cv2")]) == 0
    assert "reusing the 2 splits" in capsys.readouterr().err
    assert json.loads((tmp_path / "cv2" / "splits.json").read_text()) == saved
