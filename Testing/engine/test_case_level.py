"""Case-level applications (classification, case_regression): tiny trainings on a trivially separable set,
the input grid, inference from the CLI (printed values, a batch results.csv), evaluation against hand-computed
metrics, bad input, and a zoo package round trip."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import OBLIQUE, make_image
from naming import naming

from deepmed.applications.case_level_data import physical_extent, plan_input_grid, to_input_grid
from deepmed.cli.main import main
from deepmed.errors import DeepMedError
from deepmed.evaluation.case_level_metrics import classification_metrics, value_metrics
from deepmed.inference.predictor import Predictor
from deepmed.training.driver import train

TINY = ["data.patch_size=[16,16,16]", "network.name=densenet", "network.args.init_features=4",
        "network.args.growth_rate=4", "network.args.block_config=[1,1]", "training.iterations_per_epoch=10",
        "training.batch_size=4", "training.val_every=2", "training.device=cpu", "optimizer.lr=0.01",
        "augmentation.probability=0.0", "augmentation.flip=false"]


def write_cubes(folder, n=12, n_test=4):
    """Bright cubes in noise: the class is the cube's size (small: 3-4 voxels, large: 7-8), the value its side in
    mm; 1 in 3 training cases small (imbalanced). Images of varied spacing and origin, oblique. Validation: c06
    (small) and c07 (large); held out: c08-c11."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n):
        rng = np.random.default_rng(i)
        side = int(rng.integers(3, 5)) if i % 3 == 0 else int(rng.integers(7, 9))
        array = rng.normal(0.0, 0.3, (16, 18, 17)).astype(np.float32)
        start = rng.integers(3, 6, size=3)
        array[start[0]:start[0] + side, start[1]:start[1] + side, start[2]:start[2] + side] += 2.0
        spacing = 1.0 + 0.05 * (i % 3)
        image = make_image(array=array, spacing=(spacing,) * 3, origin=(float(i), -3.0, 2.0 * i), direction=OBLIQUE)
        sitk.WriteImage(image, str(folder / f"c{i:02d}.nii.gz"))
        entries.append({"id": f"c{i:02d}", "image": f"c{i:02d}.nii.gz", "size": "small" if side < 6 else "large",
                        "side": side * spacing})
    cut = n - n_test
    for app, key, labels in (("classification", "size", {"small": 0, "large": 1}), ("case_regression", "side", {})):
        cases = [{"id": e["id"], "image": e["image"], "value": e[key]} for e in entries]
        manifest = {"name": f"cubes_{app}", "channel_names": {"0": "MR"}, "labels": labels, "training": cases[:cut],
                    "test": cases[cut:], "splits": [{"train": [e["id"] for e in entries[:cut - 2]],
                                                     "val": [e["id"] for e in entries[cut - 2:cut]]}]}
        (folder / f"{app}.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    return write_cubes(tmp_path_factory.mktemp("cubes"))


@pytest.fixture(scope="module")
def classifier(cubes, tmp_path_factory):
    events = []
    model = train(cubes / "classification.json", tmp_path_factory.mktemp("cls") / "model", app="classification",
                  overrides=[*TINY, "training.epochs=6"], progress=events.append)
    return model, events


@pytest.fixture(scope="module")
def regressor(cubes, tmp_path_factory):
    model = train(cubes / "case_regression.json", tmp_path_factory.mktemp("reg") / "model", app="case_regression",
                  overrides=[*TINY, "training.epochs=8", "task.quantity=side", "task.unit=mm"], progress="none")
    return model


# ---- the input grid -------------------------------------------------------------------------------------
def test_the_input_grid_is_planned_from_the_median_extent_and_keeps_the_aspect():
    spacing, size, reason = plan_input_grid([[200, 200, 100], [220, 180, 100], [180, 240, 140]], 32 * 32 * 16)
    assert size == [32, 32, 16] and spacing[0] == pytest.approx((200 * 200 * 100 / (32 * 32 * 16)) ** (1 / 3))
    assert "median extent 200 x 200 x 100 mm" in reason


def test_every_case_is_centred_and_cropped_or_padded_at_one_scale():
    """A bright slab through the image's centre lands in the centre of the input grid whatever the image's
    direction; a field of view twice the box is cropped (the slab keeps its physical thickness)."""
    array = np.zeros((20, 20, 40), np.float32)
    array[:, :, 18:22] = 1.0  # 4 voxels of 1 mm along x, through the centre
    image = make_image(array=array, spacing=(1.0, 1.0, 1.0), origin=(5.0, -7.0, 3.0), direction=OBLIQUE)
    assert physical_extent(image) == pytest.approx([40.0, 20.0, 20.0])
    grid = to_input_grid([image], [1.0, 1.0, 1.0], [16, 16, 16])[0]  # (z, y, x) on LPS axes
    profile = grid[8, 8, :]
    assert grid.shape == (16, 16, 16) and profile[7:9].min() > 0.9
    thickness = float(grid[8, 8, :].sum())  # oblique by 30 degrees: 4 mm / cos(30) across x
    assert thickness == pytest.approx(4.0 / np.cos(np.deg2rad(30)), abs=0.6)


# ---- training ---------------------------------------------------------------------------------------------
def test_a_tiny_classifier_learns_the_separable_set(classifier, cubes):
    model, events = classifier
    card = json.loads((model / "model_card.json").read_text())
    assert card["application"] == "classification" and card["output_kind"] == "table"
    assert [(entry["value"], entry["name"]) for entry in card["labels"]] == [(0, "small"), (1, "large")]
    assert card["patch_size"] == [16, 16, 16] and card["network"]["name"] == "densenet"
    assert card["inputs"][0]["normalization"] == "zscore_foreground"
    assert card["training"]["sampling"] == "class_balanced"
    validations = [e["metrics"] for e in events if e["event"] == "validation"]
    assert {"accuracy", "balanced_accuracy", "auc"} <= set(validations[-1])
    predictor = Predictor(model, "cpu")
    dataset = json.loads((cubes / "classification.json").read_text())
    predicted = [predictor.predict(cubes / case["image"]).values for case in dataset["test"]]
    assert [p["class"] for p in predicted] == [case["value"] for case in dataset["test"]]
    assert all(abs(p["p_small"] + p["p_large"] - 1) < 1e-5 for p in predicted)


def test_class_balanced_sampling_weights_each_class_equally(cubes):
    from deepmed.applications import get_application
    from deepmed.data.manifest import Dataset
    from deepmed.planning.planner import make_plan
    from deepmed.training.config import resolve_config

    app = get_application("classification")
    dataset = Dataset.load(cubes / "classification.json")
    config = resolve_config({"app": "classification"}, ["data.patch_size=[16,16,16]"])
    loaded = app.load_cases(dataset.training)
    plan = make_plan(app, app.fingerprint(loaded, dataset), config, "cpu")
    data = app.prepare_data(loaded, [], dataset, plan, config)
    by_class = {}
    for item, weight in zip(data.train, data.sample_weights):
        by_class[int(item["target"][0])] = by_class.get(int(item["target"][0]), 0.0) + weight
    assert sorted(by_class) == [0, 1] and by_class[0] == pytest.approx(by_class[1])  # 3 small vs 5 large cases
    config = resolve_config({"app": "classification"}, ["task.balanced_sampling=false"])
    assert app.prepare_data(loaded, [], dataset, plan, config).sample_weights is None


def test_a_tiny_value_regressor_beats_the_mean(regressor, cubes):
    card = json.loads((regressor / "model_card.json").read_text())
    assert card["target"]["quantity"] == "side" and card["target"]["unit"] == "mm"
    assert set(card["target"]["statistics"]) == {"target_mean", "target_std"} and card["labels"] == []
    dataset = json.loads((cubes / "case_regression.json").read_text())
    predictor = Predictor(regressor, "cpu")
    truth = np.array([case["value"] for case in dataset["test"]])
    predicted = np.array([predictor.predict(cubes / case["image"]).values["value"] for case in dataset["test"]])
    mean = np.mean([case["value"] for case in dataset["training"]])
    assert np.abs(predicted - truth).mean() < 0.6 * np.abs(mean - truth).mean()


# ---- inference from the command line ----------------------------------------------------------------------
def test_infer_prints_one_case_and_writes_a_batch_table(classifier, cubes, tmp_path, capsys):
    model, _ = classifier
    out = tmp_path / "one.csv"
    assert main(["infer", "--model", str(model), str(cubes / "c00.nii.gz"), "-o", str(out), "--progress",
                 "none"]) == 0
    printed = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    assert list(printed) == ["class", "p_small", "p_large"] and printed["class"] == "small"
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["class"] == "small" and float(rows[0]["p_small"]) == pytest.approx(float(printed["p_small"]))
    batch = tmp_path / "batch"
    assert main(["infer", "--model", str(model), str(cubes / "classification.json"), "-o", str(batch),
                 "--progress", "none"]) == 0
    table = list(csv.DictReader((batch / "results.csv").open()))
    assert [row["case"] for row in table] == ["c08", "c09", "c10", "c11"]  # the manifest's held-out cases
    assert sorted(p.name for p in batch.iterdir()) == ["c08.csv", "c09.csv", "c10.csv", "c11.csv", "results.csv"]
    assert main(["evaluate", "-r", str(cubes / "classification.json"), "-p", str(batch), "-o",
                 str(tmp_path / "m.csv")]) == 0
    assert "balanced_accuracy     1.0000" in capsys.readouterr().out
    assert (tmp_path / "m_confusion.png").stat().st_size > 1000


# ---- evaluation on hand-made predictions ------------------------------------------------------------------
def _hand_made(tmp_path, rows, values, labels):
    cases = [{"id": case, "image": f"{case}.nii.gz", "value": value} for case, value in values.items()]
    manifest = tmp_path / "reference.json"
    manifest.write_text(json.dumps({"name": "ref", "labels": labels, "training": cases}))
    table = tmp_path / "results.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest, table


def test_class_metrics_against_hand_computed_values(tmp_path, capsys):
    """Three classes, six cases. Reference a a b b c c; predicted a b b b c a.
    Confusion rows (reference) a: [1,1,0], b: [0,2,0], c: [1,0,1] -> accuracy 4/6, balanced accuracy
    (1/2 + 2/2 + 1/2) / 3 = 2/3. AUC of class a (scores p_a): positives c1 0.6, c2 0.3 against negatives
    0.1 0.2 0.1 0.5 -> pairs won: 0.6 beats 4, 0.3 beats 3 -> 7/8."""
    p = {"c1": (0.6, 0.3, 0.1), "c2": (0.3, 0.6, 0.1), "c3": (0.1, 0.8, 0.1), "c4": (0.2, 0.5, 0.3),
         "c5": (0.1, 0.2, 0.7), "c6": (0.5, 0.1, 0.4)}
    rows = [{"case": case, "class": "abc"[int(np.argmax(probs))], "p_a": probs[0], "p_b": probs[1], "p_c": probs[2]}
            for case, probs in p.items()]
    values = {"c1": "a", "c2": 0, "c3": "b", "c4": "b", "c5": "c", "c6": 2}  # names or the labels' values
    manifest, table = _hand_made(tmp_path, rows, values, {"a": 0, "b": 1, "c": 2})
    assert main(["evaluate", "-r", str(manifest), "-p", str(table), "-o", str(tmp_path / "metrics.csv"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = result["metrics"]
    assert result["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]] and result["classes"] == ["a", "b", "c"]
    assert metrics["accuracy"] == pytest.approx(4 / 6) and metrics["balanced_accuracy"] == pytest.approx(2 / 3)
    assert metrics["auc_a"] == pytest.approx(7 / 8)
    # class b: positives 0.8, 0.5 vs negatives 0.3 0.6 0.2 0.1 -> 0.8 beats 4, 0.5 beats 3 -> 7/8
    # class c: positives 0.7, 0.4 vs negatives 0.1 0.1 0.1 0.3 -> 8/8
    assert metrics["auc_b"] == pytest.approx(7 / 8) and metrics["auc_c"] == pytest.approx(1.0)
    assert metrics["auc"] == pytest.approx((7 / 8 + 7 / 8 + 1) / 3)
    confusion = (tmp_path / "metrics_confusion.csv").read_text().splitlines()
    assert confusion[1:] == ["a,1,1,0", "b,0,2,0", "c,1,0,1"]
    per_case = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["correct"] for r in per_case] == ["1", "0", "1", "1", "1", "0"]


def test_value_metrics_against_hand_computed_values(tmp_path, capsys):
    """Reference 1 2 3 4, predicted 2 2 2 6: errors +1 0 -1 +2 -> MAE 1, bias 0.5, RMSE sqrt(6/4),
    R² = 1 - 6 / 5."""
    rows = [{"case": f"c{i}", "value": v} for i, v in enumerate([2, 2, 2, 6])]
    manifest, table = _hand_made(tmp_path, rows, {f"c{i}": v for i, v in enumerate([1, 2, 3, 4])}, {})
    assert main(["evaluate", "-r", str(manifest), "-p", str(table)]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    assert float(printed["mae"]) == 1.0 and float(printed["me"]) == 0.5
    assert float(printed["rmse"]) == pytest.approx(np.sqrt(1.5), abs=1e-4)
    assert float(printed["r2"]) == pytest.approx(-0.2, abs=1e-4)
    assert value_metrics([5, 5], [4, 6]) == {"mae": 1.0, "me": 0.0, "rmse": 1.0}  # R² undefined: left out


def test_an_auc_is_left_out_for_a_class_the_reference_lacks():
    metrics = classification_metrics([0, 0, 1], [[0.9, 0.1, 0.0], [0.4, 0.6, 0.0], [0.2, 0.8, 0.0]], ["a", "b", "c"])
    assert metrics["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert "auc_c" not in metrics and metrics["auc_a"] == 1.0 and metrics["auc"] == 1.0


# ---- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("app, value, message", [
    ("classification", "lareg", ("c03", "'lareg'", "small, large", "'large'")),
    ("case_regression", "old", ("c03", "'old'")),
])
def test_a_bad_case_value_is_one_line_naming_the_case(cubes, tmp_path, app, value, message, capsys):
    manifest = json.loads((cubes / f"{app}.json").read_text())
    manifest["training"][3]["value"] = value
    manifest["training"][5]["value"] = value
    path = cubes / f"bad_{app}.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(DeepMedError, match=naming(*message, "1 more")):
        train(path, tmp_path / "m", app=app, overrides=TINY, progress="none")
    assert main(["train", "--dataset", str(path), "--app", app, "--out", str(tmp_path / "m2")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "m2").exists()


def test_classes_must_be_declared_and_networks_must_give_one_output_per_case(cubes, tmp_path):
    manifest = json.loads((cubes / "classification.json").read_text())
    manifest["labels"] = {}
    path = cubes / "undeclared.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(DeepMedError, match=naming("task.classes")):
        train(path, tmp_path / "m", app="classification", overrides=TINY, progress="none")
    with pytest.raises(DeepMedError, match=naming("c00", "'small'", "big, little")):
        train(path, tmp_path / "m", app="classification", overrides=[*TINY, "task.classes=[big, little]"],
              progress="none")
    with pytest.raises(DeepMedError, match=naming("'segresnet'", "densenet, densenet121")):
        train(cubes / "classification.json", tmp_path / "m", app="classification",
              overrides=[*TINY, "network.name=segresnet"], progress="none")


def test_a_csv_manifest_gives_values_from_its_value_column(cubes):
    from deepmed.data.manifest import Dataset

    (cubes / "cubes.csv").write_text("subject_id,image,value\nc00,c00.nii.gz,small\nc01,c01.nii.gz,7.5\n")
    dataset = Dataset.load(cubes / "cubes.csv")
    assert [(c.id, c.value) for c in dataset.training] == [("c00", "small"), ("c01", 7.5)]


# ---- the zoo ------------------------------------------------------------------------------------------------
def test_export_and_import_as_a_package(classifier, cubes, tmp_path):
    from deepmed.zoo.package import export_package, import_package

    model, _ = classifier
    package = export_package(model, tmp_path / "cubes.zip", licence="CC-BY-4.0", model_id="cube-size")
    installed = import_package(package, library=tmp_path / "library")
    original = Predictor(model, "cpu").predict(cubes / "c05.nii.gz").values
    again = Predictor(installed.path, "cpu").predict(cubes / "c05.nii.gz").values
    assert again == original and installed.card.labels[1].name == "large"


@pytest.mark.parametrize("name", ["densenet", "densenet121", "resnet10", "resnet18", "efficientnet_b0"])
def test_every_vector_network_gives_one_row_per_case_in_3d(name):
    import torch

    from deepmed.networks import NETWORKS, build_network, network_arguments, outputs_vector

    assert outputs_vector(name) and not outputs_vector("unet")
    assert name in NETWORKS.names()
    network = build_network(name, network_arguments(name, 2, 3, [32, 32, 32], [1.0, 1.0, 1.0]))
    with torch.no_grad():
        assert network.eval()(torch.zeros(1, 2, 32, 32, 32)).shape == (1, 3)
