"""A new application defined here, in a test file, trains and predicts through the unchanged engine.

``mean_level`` regresses one case-level value (the manifest's ``value``) from a whole image: a task with no
voxel target, its own configuration section, its own network, step, validation and output (a CSV table).
It reaches the CLI as a plug-in (``$DEEPMED_PLUGINS``).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from naming import naming

from deepmed.applications import APPLICATIONS, Parts, Prediction, PreparedData, TrainableApplication
from deepmed.data.case_io import read_case
from deepmed.errors import DeepMedError
from deepmed.optim import build_optimizer
from deepmed.training.driver import train

REPO = Path(__file__).resolve().parents[2]


def _resample(image: sitk.Image, size: int) -> np.ndarray:
    """The whole image on a size^3 grid over the same physical box (linear)."""
    reference = sitk.Image([size] * 3, sitk.sitkFloat32)
    reference.SetSpacing([sz * sp / size for sz, sp in zip(image.GetSize(), image.GetSpacing())])
    reference.SetOrigin(image.GetOrigin())
    reference.SetDirection(image.GetDirection())
    return sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                sitk.sitkFloat32))


class LevelNet(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv3d(1, width, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.AdaptiveAvgPool3d(1))
        self.head = torch.nn.Linear(width, 1)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


@APPLICATIONS.register("mean_level", "test plug-in: one value per case from the whole image")
class MeanLevelApplication(TrainableApplication):
    name = "mean_level"
    target_kind = "values"
    output_kind = "table"
    output_suffix = ".csv"
    key_metric = "mae"
    higher_is_better = False
    default_loss = "mse"
    config_defaults = {"image_size": 12, "width": 4}

    def load_cases(self, cases):
        return [(case.id, read_case(case, with_label=False)[0][0], case.value) for case in cases]

    def fingerprint(self, loaded, dataset):
        values = [float(v) for _, _, v in loaded]
        return {"name": dataset.name, "cases": len(loaded), "values": {"mean": float(np.mean(values))}}

    def plan(self, fingerprint, config, device, reasons):
        reasons["image_size"] = "the task section of the configuration"
        return {"image_size": config["task"]["image_size"], "width": config["task"]["width"]}

    def prepare_data(self, loaded_train, loaded_val, dataset, plan, config):
        values = np.asarray([float(v) for _, _, v in loaded_train])
        fitted = {"mean": float(values.mean()), "std": float(max(values.std(), 1e-6))}
        items = lambda loaded: [{"image": _resample(img, plan["image_size"])[None],  # noqa: E731
                                 "value": np.float32([(float(v) - fitted["mean"]) / fitted["std"]])}
                                for _, img, v in loaded]
        return PreparedData(items(loaded_train), items(loaded_val), fitted)

    def training_transform(self, plan, config):
        return lambda item: item

    def build_parts(self, plan, config, fitted):
        net = LevelNet(plan["width"])
        return Parts({"model": net}, {"model": build_optimizer(config, net.parameters())},
                     {"main": torch.nn.MSELoss()})

    def train_step(self, parts, batch, step):
        image, value = step.to_device(torch.as_tensor(batch["image"]), torch.as_tensor(batch["value"]))
        loss = parts.losses["main"](parts.networks["model"](image), value)
        step.optimize(loss, parts.optimizers["model"])
        return {"loss": float(loss.item())}

    def validate_case(self, parts, item, plan, fitted, device):
        with torch.no_grad():
            predicted = parts.network()(torch.from_numpy(item["image"])[None].to(device)).item()
        return {"mae": abs(predicted - float(item["value"][0])) * fitted["std"]}

    def card_fields(self, plan, fitted, dataset, config):
        return {"inputs": [{"name": "image", "normalization": "none"}], "labels": [], "target": {"statistics": fitted},
                "task": {"image_size": plan["image_size"], "width": plan["width"]}}

    def inference_parts(self, card, model_dir):
        return {"model": LevelNet(card.task["width"])}

    def predict(self, members, inputs, card, device, options):
        image = inputs[0] if isinstance(inputs, list) else inputs
        image = image if isinstance(image, sitk.Image) else sitk.ReadImage(str(image), sitk.sitkFloat32)
        array = torch.from_numpy(_resample(image, card.task["image_size"]))[None, None].to(device)
        with torch.no_grad():
            scaled = members[0]["model"](array).item()
        stats = card.target.statistics
        return Prediction(values={"value": scaled * stats["std"] + stats["mean"]})

    def write_prediction(self, prediction, path):
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerows([list(prediction.values), list(prediction.values.values())])
        return path


def _write_dataset(folder: Path, n: int = 10) -> Path:
    """Images whose mean level is the case's value."""
    entries = []
    for i in range(n):
        level = float(i * 10)
        array = np.random.default_rng(i).normal(level, 1.0, size=(10, 12, 14)).astype(np.float32)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.5, 1.0, 2.0))
        sitk.WriteImage(image, str(folder / f"c{i}.nii.gz"))
        entries.append({"image": f"c{i}.nii.gz", "value": level})
    path = folder / "dataset.json"
    path.write_text(json.dumps({"name": "levels", "training": entries}))
    return path


SETTINGS = ["training.epochs=6", "training.iterations_per_epoch=30", "training.batch_size=4",
            "optimizer.lr=0.02", "training.device=cpu", "training.val_every=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin")
    manifest = _write_dataset(folder)
    events = []
    model = train(manifest, folder / "model", app="mean_level", overrides=SETTINGS + ["task.width=6"],
                  progress=events.append)
    return manifest, model, events


def test_the_engine_trains_an_application_it_does_not_know(trained):
    manifest, model, events = trained
    card = json.loads((model / "model_card.json").read_text())
    assert card["application"] == "mean_level" and card["output_kind"] == "table"
    assert card["task"] == {"image_size": 12, "width": 6}  # the application's own config section, validated
    plan = json.loads((model / "plan.json").read_text())
    assert plan["application"] == "mean_level" and plan["schedule"]["iterations_per_epoch"] == 30
    losses = [e["loss"] for e in events if e["event"] == "epoch"]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    assert any(e["event"] == "validation" and "mae" in e["metrics"] for e in events)


def test_the_predictor_runs_it_and_the_output_is_the_applications(trained, tmp_path):
    from deepmed.inference.predictor import Predictor

    manifest, model, _ = trained
    predictor = Predictor(model, "cpu")
    low = predictor.predict([manifest.parent / "c1.nii.gz"]).values["value"]
    high = predictor.predict([manifest.parent / "c8.nii.gz"]).values["value"]
    assert high - low > 35  # the true levels differ by 70
    assert predictor.output_kind == "table"


def test_its_config_section_is_checked(tmp_path):
    manifest = _write_dataset(tmp_path, 4)
    with pytest.raises(DeepMedError, match=naming("'task.widht'", "'width'")):
        train(manifest, tmp_path / "m", app="mean_level", overrides=SETTINGS + ["task.widht=6"], progress="none")


def test_the_command_line_finds_it_as_a_plug_in(trained, tmp_path):
    manifest, model, _ = trained
    env = {**os.environ, "DEEPMED_PLUGINS": "test_plugin_application",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1]),
                                          str(REPO / "SlicerDeepMed")])}
    listed = subprocess.run([sys.executable, "-m", "deepmed", "list", "applications", "--trainable"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert "mean_level" in listed  # a trainable plug-in: the Train panel offers it
    out = tmp_path / "level.csv"
    run = subprocess.run([sys.executable, "-m", "deepmed", "infer", "--model", str(model),
                          str(manifest.parent / "c5.nii.gz"), "-o", str(out), "--progress", "none"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["value"] and abs(float(rows[1][0]) - 50) < 25
    assert run.stdout.startswith("value: ")  # a case-level result is printed as well as written
    assert abs(float(run.stdout.split(":")[1]) - float(rows[1][0])) < 1e-3
    batch = tmp_path / "batch"
    run = subprocess.run([sys.executable, "-m", "deepmed", "infer", "--model", str(model), str(manifest),
                          "-o", str(batch), "--progress", "none"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    table = list(csv.DictReader((batch / "results.csv").open()))  # one table for the whole batch
    assert [row["case"] for row in table] == [f"c{i}" for i in range(10)]
    assert float(table[9]["value"]) - float(table[0]["value"]) > 40


def test_modes_from_the_card_check_their_inputs(trained, tmp_path):
    """The card's ``modes`` say what each mode takes; a wrong number of inputs or conditions is one line."""
    import shutil

    from deepmed.inference.predictor import Predictor

    manifest, model, _ = trained
    copy = tmp_path / "moded"
    shutil.copytree(model, copy)
    card = json.loads((copy / "model_card.json").read_text())
    card["modes"] = [{"name": "predict", "output_kind": "table", "inputs": "images"},
                     {"name": "generate", "output_kind": "image", "inputs": "conditions"}]
    card["conditions"] = [{"name": "size"}, {"name": "position"}]
    (copy / "model_card.json").write_text(json.dumps(card))
    predictor = Predictor(copy, "cpu")
    image = manifest.parent / "c1.nii.gz"
    assert predictor.predict(image).values["value"] == predictor.predict([image], mode="predict").values["value"]
    with pytest.raises(DeepMedError, match=naming("'encode'", "predict, generate")):
        predictor.predict([image], mode="encode")
    with pytest.raises(DeepMedError, match=naming("'generate'")):
        predictor.predict([image], mode="generate", condition=[1.0, 2.0])
    with pytest.raises(DeepMedError, match=naming("size, position", "got 1")):
        predictor.predict([], mode="generate", condition=[1.0])
    with pytest.raises(DeepMedError, match=naming("1 input channel", "got 2")):
        predictor.predict([image, image])
