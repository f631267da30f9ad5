"""Cross-validation (deepmed train --folds), out-of-fold report, post-processing chosen by it, fold ensembles;
folds fixed in the manifest; batch inference that skips unreadable cases."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from naming import names, naming
from test_training import TINY, write_tiny_dataset

from deepmed.cli.main import main
from deepmed.data.manifest import Dataset
from deepmed.data.split import add_splits
from deepmed.errors import DeepMedError
from deepmed.inference.predictor import Predictor
from deepmed.training.driver import train
from deepmed.workflows.cross_validation import parse_folds

SETTINGS = [s for s in TINY if "val_every" not in s] + ["training.epochs=3", "optimizer.lr=0.01"]


def split_dataset(folder, folds=3, n=6):
    manifest = write_tiny_dataset(folder, n=n)
    dataset = Dataset.load(manifest)
    add_splits(dataset, folds=folds, seed=0)
    dataset.save(manifest)
    return manifest


@pytest.mark.parametrize("text, folds", [("all", [0, 1, 2]), ("3", [0, 1, 2]), ("0,2", [0, 2]), ("1", None)])
def test_fold_choices_follow_the_manifest(text, folds):
    if folds is None:
        with pytest.raises(DeepMedError, match=naming("3 split")):
            parse_folds(text, 3)
    else:
        assert parse_folds(text, 3) == folds


def test_a_fold_without_splits_is_an_error_not_ignored(tmp_path, capsys):
    manifest = write_tiny_dataset(tmp_path / "data")
    with pytest.raises(DeepMedError, match=naming("training.fold=1", "splits")):
        train(manifest, tmp_path / "m", overrides=SETTINGS + ["training.fold=1"], progress="none")
    # --folds makes them (test_application_defaults), but not more folds than cases, and nothing is left behind
    assert main(["train", "--dataset", str(manifest), "--out", str(tmp_path / "cv"), "--folds", "5"]) == 2
    assert names(capsys.readouterr().err, "--folds 5", "4")  # the request and the dataset's 4 cases
    assert not (tmp_path / "cv").exists() and not (tmp_path / "data" / "dataset.splits.json").exists()


@pytest.fixture(scope="module")
def cross_validated(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    manifest = split_dataset(root / "data")
    args = ["train", "--dataset", str(manifest), "--out", str(root / "model"), "--folds", "3", "--progress", "none"]
    assert main(args + [a for s in SETTINGS for a in ("--set", s)]) == 0
    return manifest, root / "model"


@pytest.mark.slow
def test_three_folds_give_an_out_of_fold_report_and_an_ensemble(cross_validated):
    manifest, model = cross_validated
    for fold in range(3):
        assert (model / f"fold_{fold}" / "model.safetensors").is_file()
    report = model / "cross_validation"
    rows = (report / "evaluation.csv").read_text().splitlines()
    assert rows[0].startswith("case,label,name,dice") and len(rows) == 1 + 6 * 2  # 6 held-out cases x 2 labels
    assert (report / "report.png").stat().st_size > 1000 and "dice mean" in (report / "summary.txt").read_text()
    card = json.loads((model / "model_card.json").read_text())
    assert card["folds"] == [0, 1, 2] and set(card["fold_inputs"]) == {"0", "1", "2"}
    assert set(card["cross_validation"]["out_of_fold"]) == {"box", "core"}
    assert "keep_largest" in card["postprocessing"]
    fold_cards = [json.loads((model / f"fold_{k}" / "model_card.json").read_text()) for k in range(3)]
    temperatures = {str(k): c["calibration"]["temperature"] for k, c in enumerate(fold_cards)}  # each fold's own
    calibration = card["calibration"]
    assert calibration["fold_temperatures"] == temperatures and calibration["ece"]["evaluated_on"] == "folds_mean"
    geometric_mean = np.exp(np.mean(np.log(list(temperatures.values()))))
    assert calibration["temperature"] == pytest.approx(geometric_mean, rel=1e-4)
    plans = [json.loads((model / f"fold_{k}" / "plan.json").read_text()) for k in range(3)]
    assert len({json.dumps([p["spacing"], p["patch_size"]]) for p in plans}) == 1  # one shared plan


@pytest.mark.slow
def test_the_ensemble_averages_folds_and_a_fold_subset_runs_alone(cross_validated, tmp_path):
    manifest, model = cross_validated
    image = sitk.ReadImage(str(manifest.parent / "c0.nii.gz"))
    ensemble = Predictor(model, "cpu")
    assert len(ensemble.members) == 3
    single = Predictor(model, "cpu", folds=[1])
    fold_model = Predictor(model / "fold_1", "cpu")
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(single.predict(image, keep_largest=False).output),
        sitk.GetArrayFromImage(fold_model.predict(image, keep_largest=False).output))
    with pytest.raises(DeepMedError, match=naming("0, 1, 2", "5")):
        Predictor(model, "cpu", folds=[5])
    out = tmp_path / "seg.nii.gz"
    assert main(["infer", "--model", str(model), str(manifest.parent / "c0.nii.gz"), "-o", str(out),
                 "--folds", "0,2", "--progress", "none"]) == 0
    assert sitk.ReadImage(str(out)).GetSize() == image.GetSize()


@pytest.mark.slow
def test_the_zoo_exports_and_imports_every_fold(cross_validated, tmp_path, monkeypatch):
    from deepmed.zoo.package import export_package, import_package

    manifest, model = cross_validated
    monkeypatch.setenv("DEEPMED_LIBRARY", str(tmp_path / "library"))
    package = export_package(model, tmp_path / "cv.zip", model_id="cv-ensemble", licence="CC-BY-4.0")
    installed = import_package(package)
    predictor = Predictor(installed.path, "cpu")
    assert predictor.folds == [0, 1, 2] and len(predictor.members) == 3
    image = sitk.ReadImage(str(manifest.parent / "c3.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(predictor.predict(image).output),
                                  sitk.GetArrayFromImage(Predictor(model, "cpu").predict(image).output))


@pytest.mark.slow
def test_batch_inference_skips_an_unreadable_case_and_goes_on(cross_validated, tmp_path, capsys):
    manifest, model = cross_validated
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("c0.nii.gz", "c1.nii.gz"):
        (folder / name).write_bytes((manifest.parent / name).read_bytes())
    (folder / "broken.nii.gz").write_bytes((manifest.parent / "c2.nii.gz").read_bytes()[:200])
    assert main(["infer", "--model", str(model / "fold_0"), str(folder), "-o", str(tmp_path / "out"),
                 "--progress", "jsonl"]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    assert [e["case"] for e in events] == ["broken", "c0", "c1"]
    assert events[0]["skipped"] and events[0]["output"] is None and all("seconds" in e for e in events)
    assert "skipped broken" in captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c0.nii.gz", "c1.nii.gz", "results.csv"]
    scored = {row["case"] for row in csv.DictReader((tmp_path / "out" / "results.csv").open()) if row["uncertainty"]}
    assert scored == {"c0", "c1"}  # the per-case uncertainty of the cases read
