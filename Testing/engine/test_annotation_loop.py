"""The annotation loop's engine (issue 20): the per-case uncertainty score, ``deepmed review`` ranking a pool
(on the cases' exact grids, resumable), library versions (``name@N``, the promoted one under ``name``) and
``deepmed improve`` promoting a better version and refusing a worse one."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from deepmed.cli.main import main
from deepmed.evaluation.uncertainty import EntropyAccumulator, boundary_band, case_uncertainty, fold_disagreement
from deepmed.training.driver import train

TINY = ["data.patch_size=[16,16,16]", "network.args.channels=[8,16,32]", "network.args.strides=[2,2]",
        "training.iterations_per_epoch=2", "training.val_every=1", "training.device=cpu", "optimizer.lr=0.01"]


def write_boxes(folder, seeds, pool_seeds=(), test_seeds=()):
    """A bright box (label 1) in noise per case, on an oblique-free grid with odd spacing and origin;
    ``pool_seeds`` cases go to the pool without their labels (kept beside them as ``*_truth``)."""
    folder.mkdir(parents=True, exist_ok=True)

    def case(seed, with_label):
        rng = np.random.default_rng(seed)
        label = np.zeros((18, 22, 26), np.uint8)
        z, y, x = rng.integers(2, 6), rng.integers(2, 8), rng.integers(2, 8)
        label[z:z + rng.integers(8, 12), y:y + rng.integers(9, 13), x:x + rng.integers(10, 16)] = 1
        image = sitk.GetImageFromArray((rng.normal(0, 0.5, label.shape) + 1.5 * label).astype(np.float32))
        image.SetSpacing((1.1, 0.9, 1.6))
        image.SetOrigin((-3.0, 7.5, 2.25))
        target = sitk.GetImageFromArray(label)
        target.CopyInformation(image)
        sitk.WriteImage(image, str(folder / f"c{seed}.nii.gz"))
        name = f"c{seed}_seg.nii.gz" if with_label else f"c{seed}_truth.nii.gz"
        sitk.WriteImage(target, str(folder / name))
        entry = {"id": f"c{seed}", "image": [f"c{seed}.nii.gz"]}
        return {**entry, "label": name} if with_label else entry

    manifest = {"name": "boxes", "channel_names": {"0": "MR"}, "labels": {"background": 0, "box": 1},
                "training": [case(s, True) for s in seeds], "test": [case(s, True) for s in test_seeds],
                "pool": [case(s, False) for s in pool_seeds]}
    (folder / "dataset.json").write_text(json.dumps(manifest))
    return folder / "dataset.json"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A library holding 'boxes', a 3-epoch model (a weak start), and its dataset with a pool of 4."""
    root = tmp_path_factory.mktemp("loop")
    manifest = write_boxes(root / "data", range(6), pool_seeds=range(20, 24))
    (root / "library").mkdir()
    train(manifest, root / "library" / "boxes", overrides=TINY + ["training.epochs=3"], progress="none")
    return root / "library", manifest


# ---- the score ---------------------------------------------------------------------------------------
def test_entropy_accumulator_matches_the_direct_formula_one_class_at_a_time():
    rng = np.random.default_rng(0)
    q = rng.random((3, 4, 5, 6)).astype(np.float32)
    accumulator = EntropyAccumulator()
    for channel in q:
        accumulator.add(channel)
    p = q / q.sum(axis=0)
    direct = -(p * np.log(p)).sum(axis=0) / np.log(3)
    np.testing.assert_allclose(accumulator.normalised(), direct, atol=1e-5)
    sure = EntropyAccumulator()
    sure.add(np.ones((2, 2)))
    sure.add(np.zeros((2, 2)))
    np.testing.assert_allclose(sure.normalised(), 0, atol=1e-6)


def test_case_score_is_the_mean_entropy_on_the_boundary_band_of_the_prediction():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[3:7, 3:7, 3:7] = 1
    band = boundary_band(labels, width=1)
    assert band[3, 3, 3] and band[2, 3, 3] and not band[5, 5, 5] and not band[0, 0, 0]
    entropy = np.zeros(labels.shape, np.float32)
    entropy[band] = 0.8
    entropy[0, 0, 0] = 1.0  # far from the boundary: not counted
    assert case_uncertainty(labels, entropy, width=1).score == pytest.approx(0.8)
    wider = case_uncertainty(labels, entropy, width=2)
    assert wider.band_voxels > int(band.sum()) and wider.score < 0.8
    nothing = case_uncertainty(np.zeros_like(labels), entropy)  # no boundary: the whole image's mean
    assert nothing.band_voxels == 0 and nothing.score == pytest.approx(entropy.mean())
    with pytest.raises(ValueError, match="shape"):
        case_uncertainty(labels, entropy[:5])


def test_fold_disagreement_is_one_minus_the_mean_pairwise_dice():
    a = np.zeros((4, 4, 4), np.uint8)
    a[:2] = 1
    b = a.copy()
    c = np.zeros_like(a)
    c[:1] = 1  # half of a's voxels: Dice 2/3 with a and with b
    assert fold_disagreement([a, b]) == 0.0
    assert fold_disagreement([a, b, c]) == pytest.approx(1 - (1 + 2 / 3 + 2 / 3) / 3)
    assert fold_disagreement([np.zeros_like(a), np.zeros_like(a)]) == 0.0  # no foreground anywhere: agree
    with pytest.raises(ValueError, match="at least 2"):
        fold_disagreement([a])


def test_batch_inference_writes_the_score_it_computes_from_the_maps_it_writes(library, tmp_path):
    lib, manifest = library
    images = tmp_path / "images"
    images.mkdir()
    for seed in (20, 21):
        shutil.copy(manifest.parent / f"c{seed}.nii.gz", images)
    assert main(["infer", "--model", str(lib / "boxes"), str(images), "-o", str(tmp_path / "out"),
                 "--uncertainty", str(tmp_path / "unc"), "--progress", "none"]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").read_text().splitlines()))
    from deepmed.evaluation.table_evaluation import is_table

    assert not is_table(tmp_path / "out")  # deepmed evaluate still scores the label maps, not this table
    assert [r["case"] for r in rows] == ["c20", "c21"]
    for row in rows:
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / f"{row['case']}.nii.gz")))
        entropy = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "unc" / f"{row['case']}.nii.gz")))
        expected = case_uncertainty(labels, entropy)
        assert float(row["uncertainty"]) == pytest.approx(expected.score, abs=1e-5)
        assert int(row["uncertainty_band_voxels"]) == expected.band_voxels


def test_a_fold_ensemble_reports_how_much_its_folds_disagree(library, tmp_path):
    from safetensors.torch import load_file

    from deepmed.inference.predictor import Predictor
    from deepmed.model.weights import ensemble_weights, save_weights

    lib, manifest = library
    weights = load_file(str(lib / "boxes" / "model.safetensors"))
    image = [manifest.parent / "c20.nii.gz"]
    disagreement = {}
    for name, second in (("same", weights), ("blank", {k: v * 0 for k, v in weights.items()})):
        ensemble = tmp_path / name
        shutil.copytree(lib / "boxes", ensemble)
        save_weights(ensemble_weights({0: weights, 1: second}), ensemble / "model.safetensors")
        card = json.loads((ensemble / "model_card.json").read_text())
        (ensemble / "model_card.json").write_text(json.dumps({**card, "folds": [0, 1]}))
        values = Predictor(ensemble, "cpu").predict(image, uncertainty=True).values
        disagreement[name] = values["fold_disagreement"]
        assert Predictor(ensemble, "cpu").predict(image).values is None  # only with the uncertainty asked for
    assert disagreement["same"] == 0.0 and disagreement["blank"] > 0.5  # a blank fold predicts no box at all


# ---- review --------------------------------------------------------------------------------------------
def test_review_ranks_the_pool_by_score_on_each_case_grid_and_resumes(library, tmp_path, capsys):
    lib, manifest = library
    out = tmp_path / "review"
    assert main(["review", str(manifest), "--model", "boxes", "--library", str(lib), "-o", str(out),
                 "--progress", "jsonl"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["case"] for e in events if e["event"] == "inference"] == ["c20", "c21", "c22", "c23"]
    assert not any(e.get("reused") for e in events if e["event"] == "inference")
    rows = list(csv.DictReader((out / "ranking.csv").read_text().splitlines()))
    scores = [float(r["score"]) for r in rows]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4] and scores == sorted(scores, reverse=True)
    assert {r["model"] for r in rows} == {"boxes"} and {r["model_version"] for r in rows} == {"1"}
    for row in rows:
        source = sitk.ReadImage(str(manifest.parent / f"{row['case']}.nii.gz"))
        for key in ("prediction", "uncertainty"):
            written = sitk.ReadImage(str(out / row[key]))
            assert written.GetSize() == source.GetSize() and written.GetOrigin() == source.GetOrigin()
            assert written.GetSpacing() == source.GetSpacing()
    first_ranking = (out / "ranking.csv").read_text()
    assert main(["review", str(manifest), "--model", "boxes", "--library", str(lib), "-o", str(out),
                 "--progress", "jsonl"]) == 0
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(e["reused"] for e in again if e["event"] == "inference")
    assert (out / "ranking.csv").read_text() == first_ranking
    assert main(["review", str(manifest), "--model", "boxes", "--library", str(lib), "-o", str(tmp_path / "f"),
                 "--strategy", "first", "--limit", "2", "--progress", "none"]) == 0
    assert [r["case"] for r in csv.DictReader((tmp_path / "f" / "ranking.csv").read_text().splitlines())] == ["c20", "c21"]
    assert not (tmp_path / "f" / "predictions" / "c22.nii.gz").exists()  # only the limit is predicted


def test_bad_review_and_improve_requests_are_one_line(library, tmp_path, capsys):
    lib, manifest = library
    nopool = write_boxes(tmp_path / "nopool", range(2))
    assert main(["review", str(nopool), "--model", "boxes", "--library", str(lib), "-o", str(tmp_path / "r")]) == 2
    assert "no 'pool'" in capsys.readouterr().err
    assert main(["review", str(manifest), "--model", "boxes", "--library", str(lib), "-o", str(tmp_path / "r"),
                 "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    shutil.copytree(manifest.parent, damaged)
    (damaged / "c21.nii.gz").write_bytes(b"not an image")
    assert main(["review", str(damaged / "dataset.json"), "--model", "boxes", "--library", str(lib),
                 "-o", str(tmp_path / "d"), "--progress", "none"]) == 0
    assert "skipped c21" in capsys.readouterr().err
    ranked = [r["case"] for r in csv.DictReader((tmp_path / "d" / "ranking.csv").read_text().splitlines())]
    assert sorted(ranked) == ["c20", "c22", "c23"]
    one = write_boxes(tmp_path / "one", range(1))
    copy = tmp_path / "lib"
    shutil.copytree(lib / "boxes", copy / "boxes")
    assert main(["improve", str(one), "--model", "boxes", "--library", str(copy), "--time", "5"]) == 2
    err = capsys.readouterr().err
    assert "at least 2 labelled cases" in err and "Traceback" not in err
    assert not (copy / "boxes@2").exists()


# ---- versions and improve ------------------------------------------------------------------------------
def test_versions_resolve_and_list(library, tmp_path, capsys):
    from deepmed.zoo.library import installed_models, resolve_model
    from deepmed.zoo.versions import ModelVersions, write_versions

    lib = tmp_path / "lib"
    shutil.copytree(library[0] / "boxes", lib / "boxes")
    shutil.copytree(library[0] / "boxes", lib / "boxes@2")
    assert resolve_model("boxes", lib) == lib / "boxes"  # no record: version 1
    write_versions(lib, ModelVersions("boxes", promoted=2))
    assert resolve_model("boxes", lib) == lib / "boxes@2"
    shutil.rmtree(lib / "boxes@2")
    assert resolve_model("boxes", lib) == lib / "boxes"  # the promoted folder went missing: the newest left
    shutil.copytree(library[0] / "boxes", lib / "boxes@2")
    write_versions(lib, ModelVersions("boxes", promoted=1))
    assert resolve_model("boxes", lib) == lib / "boxes"
    assert resolve_model("boxes@2", lib) == lib / "boxes@2" and resolve_model("boxes@1", lib) == lib / "boxes"
    (listed,) = installed_models(lib)
    assert (listed.id, listed.version, listed.versions, listed.path) == ("boxes", 1, (1, 2), lib / "boxes")
    assert [m.id for m in installed_models(lib, all_versions=True)] == ["boxes", "boxes@2"]
    assert main(["list", "models", "--library", str(lib), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["versions"] == [1, 2]


def test_a_failed_improvement_uses_up_no_version_number(library, tmp_path, monkeypatch, capsys):
    import deepmed.workflows.improve as improve_module
    from deepmed.errors import DeepMedError
    from deepmed.zoo.versions import next_version, read_versions

    lib = tmp_path / "lib"
    shutil.copytree(library[0] / "boxes", lib / "boxes")

    def failing(dataset, out, **options):  # writes part of a model folder, then fails as a real run can
        out.mkdir(parents=True)
        (out / "config.yaml").write_text("epochs: 1\n")
        raise DeepMedError("training stopped: out of memory")

    monkeypatch.setattr(improve_module, "train", failing)
    assert main(["improve", str(library[1]), "--model", "boxes", "--library", str(lib), "--time", "3",
                 "--progress", "none"]) == 2
    assert "out of memory" in capsys.readouterr().err
    assert sorted(p.name for p in lib.iterdir()) == ["boxes", "boxes.versions.json"]  # nothing half-written
    assert next_version(lib, "boxes") == 2 and read_versions(lib, "boxes").history == ()


@pytest.mark.slow
def test_improve_promotes_a_better_version_and_keeps_the_old_one_when_worse(library, tmp_path, monkeypatch):
    import deepmed.workflows.improve as improve_module
    from deepmed.zoo.library import resolve_model
    from deepmed.zoo.versions import read_versions

    lib = tmp_path / "lib"
    shutil.copytree(library[0] / "boxes", lib / "boxes")
    manifest = library[1]
    assert main(["improve", str(manifest), "--model", "boxes", "--library", str(lib), "--time", "12",
                 "--progress", "none"]) == 0
    record = read_versions(lib, "boxes")
    comparison = json.loads((lib / "boxes@2" / "improvement.json").read_text())
    assert comparison["new_mean"] > comparison["old_mean"] and comparison["promoted"]
    assert record.promoted == 2 and resolve_model("boxes", lib) == lib / "boxes@2"
    held_out = record.held_out
    assert held_out == tuple(comparison["cases"]) and len(comparison["trained_on"]) == 5
    assert not set(held_out) & set(comparison["trained_on"])

    def worse(dataset, out, **options):  # the test's seam: the new weights are zeroed after training
        from safetensors.torch import load_file, save_file

        done = train(dataset, out, **options)
        tensors = load_file(str(done / "model.safetensors"))
        save_file({k: v * 0 for k, v in tensors.items()}, str(done / "model.safetensors"))
        return done

    monkeypatch.setattr(improve_module, "train", worse)
    assert main(["improve", str(manifest), "--model", "boxes", "--library", str(lib), "--time", "3",
                 "--progress", "none"]) == 0
    record = read_versions(lib, "boxes")
    assert record.promoted == 2 and resolve_model("boxes", lib) == lib / "boxes@2"  # boxes@3 kept, not promoted
    assert (lib / "boxes@3" / "improvement.json").is_file() and record.held_out == held_out
    assert [entry["promoted"] for entry in record.history] == [True, False]
