"""Manifest formats: MSD / nnU-Net v2 JSON, nnU-Net raw folders, CSV, folder scans, splits."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk
from conftest import make_image, make_label
from naming import names, naming

from deepmed.data import Dataset, DatasetInvalid
from deepmed.data.scan import ScanPatterns, scan_folder
from deepmed.data.split import add_splits, fraction_split, kfold_splits
from deepmed.errors import DeepMedError


def test_msd_manifest_value_to_name_labels_and_modality(toy_dataset):
    ds = Dataset.load(toy_dataset)
    assert ds.name == "toy"
    assert ds.channel_names == {"0": "T1", "1": "T2"}
    assert ds.labels == {"background": 0, "a": 1, "b": 2}
    assert [c.id for c in ds.training] == ["case0", "case1", "case2"]
    assert ds.training[0].images[1] == toy_dataset.parent / "case0_t2.nii.gz"
    assert ds.training[0].label == toy_dataset.parent / "case0_seg.nii.gz"


def test_nnunet_v2_name_to_value_labels_and_round_trip(toy_dataset, tmp_path):
    data = json.loads(toy_dataset.read_text())
    data["labels"] = {"background": 0, "a": 1, "b": 2}
    data["channel_names"] = data.pop("modality")
    toy_dataset.write_text(json.dumps(data))
    ds = Dataset.load(toy_dataset)
    assert ds.labels == {"background": 0, "a": 1, "b": 2}
    out = tmp_path / "sub"
    out.mkdir()
    ds.save(out / "copy.json")
    again = Dataset.load(out / "copy.json")
    assert [c.images for c in again.training] == [c.images for c in ds.training]
    assert json.loads((out / "copy.json").read_text())["training"][0]["image"][0] == "../case0_t1.nii.gz"


def test_regression_manifest_may_have_no_labels(tmp_path):
    sitk.WriteImage(make_image(), str(tmp_path / "mr.nii.gz"))
    sitk.WriteImage(make_image(seed=3), str(tmp_path / "ct.nii.gz"))
    (tmp_path / "d.json").write_text(json.dumps({"training": [{"image": "mr.nii.gz", "label": "ct.nii.gz"}]}))
    ds = Dataset.load(tmp_path / "d.json")
    assert ds.labels == {} and ds.training[0].id == "ct"


def test_nnunet_raw_folder(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "imagesTs").mkdir()
    for case in ("liver_001", "liver_002"):
        for ch in range(2):
            sitk.WriteImage(make_image(seed=ch), str(tmp_path / "imagesTr" / f"{case}_{ch:04d}.nii.gz"))
        sitk.WriteImage(make_label(make_image()), str(tmp_path / "labelsTr" / f"{case}.nii.gz"))
    sitk.WriteImage(make_image(), str(tmp_path / "imagesTs" / "liver_009_0000.nii.gz"))
    sitk.WriteImage(make_image(), str(tmp_path / "imagesTs" / "liver_009_0001.nii.gz"))
    (tmp_path / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "liver": 1, "tumour": 2},
        "numTraining": 2, "file_ending": ".nii.gz"}))
    ds = Dataset.load(tmp_path)
    assert [c.id for c in ds.training] == ["liver_001", "liver_002"]
    assert [p.name for p in ds.training[1].images] == ["liver_002_0000.nii.gz", "liver_002_0001.nii.gz"]
    assert ds.training[0].label.name == "liver_001.nii.gz"
    assert [c.id for c in ds.test] == ["liver_009"]
    assert ds.labels["tumour"] == 2


def test_csv_niftynet_style(tmp_path):
    for s in ("s01", "s02"):
        sitk.WriteImage(make_image(), str(tmp_path / f"{s}_t1.nrrd"))
        sitk.WriteImage(make_label(make_image()), str(tmp_path / f"{s}_seg.nrrd"))
    (tmp_path / "d.csv").write_text("subject_id,image_t1,label\ns01,s01_t1.nrrd,s01_seg.nrrd\ns02,s02_t1.nrrd,s02_seg.nrrd\n")
    ds = Dataset.load(tmp_path / "d.csv")
    assert [c.id for c in ds.training] == ["s01", "s02"]
    assert ds.channel_names == {"0": "t1"}
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DeepMedError, match=naming("bad.csv", "id")):
        Dataset.load(tmp_path / "bad.csv")


def test_scan_with_channel_patterns_pairs_by_subject(tmp_path):
    for s in ("s01", "s02", "s03"):
        sitk.WriteImage(make_image(), str(tmp_path / f"{s}_t1.nii.gz"))
        sitk.WriteImage(make_image(seed=4), str(tmp_path / f"{s}_flair.nii.gz"))
        if s != "s03":
            sitk.WriteImage(make_label(make_image(), values=(1, 4)), str(tmp_path / f"{s}_seg.nii.gz"))
    sitk.WriteImage(make_image(), str(tmp_path / "s01_t1_old.nii.gz"))
    ds, warnings = scan_folder(tmp_path, ScanPatterns(images=["_t1", "_flair"], label="_seg", not_contains=["_old"]))
    assert [c.id for c in ds.training] == ["s01", "s02"]
    assert [p.name for p in ds.training[0].images] == ["s01_t1.nii.gz", "s01_flair.nii.gz"]
    assert [c.id for c in ds.test] == ["s03"]
    assert ds.labels == {"background": 0, "label_1": 1, "label_4": 4}
    assert warnings == []


def test_scan_auto_mode_on_real_scans(shared_data):
    ds, warnings = scan_folder(shared_data / "pyradiomics")
    assert sorted(c.id for c in ds.training) == ["brain1", "brain2", "breast1", "prostate_phantom_subvolume"]
    assert ds.labels == {"background": 0, "label_1": 1, "label_7": 7, "label_8": 8, "label_9": 9}


def test_scan_dicom_folder_as_image(shared_data):
    ds, _ = scan_folder(shared_data / "totalsegmentator", ScanPatterns(images=["_ct"], label="_seg",
                                                                        label_not_contains=["_mr"],
                                                                        remove_from_id="_sm$"))
    by_id = {c.id: c for c in ds.training}
    assert sorted(by_id) == ["example", "example_dicom"]
    assert by_id["example_dicom"].images[0].is_dir()
    assert by_id["example_dicom"].label.name == "example_seg_dicom.nii.gz"


def test_kfold_splits_are_disjoint_and_cover_everything():
    ids = [f"c{i}" for i in range(11)]
    folds = kfold_splits(ids, 5, seed=0)
    assert len(folds) == 5
    assert sorted(i for f in folds for i in f["val"]) == sorted(ids)
    for f in folds:
        assert not set(f["train"]) & set(f["val"])
        assert len(f["train"]) + len(f["val"]) == 11
    assert kfold_splits(ids, 5, seed=0) == folds
    assert kfold_splits(ids, 5, seed=1) != folds
    with pytest.raises(DeepMedError, match="needs at least 12"):
        kfold_splits(ids, 12)


def test_fraction_split_and_storage(toy_dataset):
    split = fraction_split([f"c{i}" for i in range(20)], 0.7, 0.15, 0.15, seed=0)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (14, 3, 3)
    with pytest.raises(DeepMedError, match="must sum to 1"):
        fraction_split(["a", "b"], 0.5, 0.5, 0.5)
    ds = Dataset.load(toy_dataset)
    add_splits(ds, fractions=(0.34, 0.33, 0.33), seed=0)
    ds.save(toy_dataset)
    again = Dataset.load(toy_dataset)
    train, val, test = again.split_cases(0)
    assert sorted(c.id for c in train + val + test) == ["case0", "case1", "case2"]
    assert len(train) == len(val) == len(test) == 1


def test_structural_problems_are_all_reported(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({
        "name": "x", "lables": {}, "training": [{"imag": "a.nii.gz", "label": "b.nii.gz"}, {"image": "c.nii.gz"}],
        "splits": [{"train": ["zzz"], "vall": []}]}))
    with pytest.raises(DatasetInvalid) as info:
        Dataset.load(tmp_path / "d.json")
    problems = info.value.problems  # each names the place, the key and the suggestion
    assert any(names(p, "'lables'", "'labels'") for p in problems)
    assert any(names(p, "training[0]", "'imag'", "'image'") for p in problems)
    assert any(names(p, "training[1]", "'label'") for p in problems)
    assert any(names(p, "splits[0]", "'vall'", "'val'") for p in problems)
    assert len(info.value.problems) >= 5


def test_json_syntax_error_has_line_and_column(tmp_path):
    (tmp_path / "d.json").write_text('{\n  "name": "x",\n  "training": [\n    {"image": "a.nii.gz",}\n  ]\n}\n')
    with pytest.raises(DeepMedError, match=naming("d.json", "line 4", "column 26")):
        Dataset.load(tmp_path / "d.json")


def test_empty_dataset(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"name": "x", "training": []}))
    with pytest.raises(DatasetInvalid, match="dataset is empty"):
        Dataset.load(tmp_path / "d.json")


def test_an_image_only_dataset_loads_and_dense_applications_refuse_it(tmp_path):
    """No training case gives a target: fine for an autoencoder or super-resolution from high-resolution
    scans, refused in one line by the applications that need a target image."""
    import json

    import pytest

    from deepmed.applications import get_application
    from deepmed.data.manifest import Dataset
    from deepmed.errors import DeepMedError

    (tmp_path / "a.nii.gz").write_bytes(b"")
    (tmp_path / "b.nii.gz").write_bytes(b"")
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"name": "scans", "labels": {"background": 0, "organ": 1},
                                "training": [{"image": "a.nii.gz"}, {"image": "b.nii.gz"}]}))
    dataset = Dataset.load(path)
    assert [case.label for case in dataset.training] == [None, None]
    for name in ("segmentation", "regression"):
        with pytest.raises(DeepMedError, match=naming(name, "'label'", "a, b")):
            get_application(name).check_dataset(dataset)


def test_pool_of_unlabelled_cases_round_trips_and_is_checked(tmp_path):
    manifest = {"name": "x", "labels": {"background": 0, "a": 1},
                "training": [{"image": "a.nii.gz", "label": "a_seg.nii.gz"}],
                "pool": [{"image": "u1.nii.gz"}, {"id": "u2", "image": ["u2.nii.gz"]}]}
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(manifest))
    dataset = Dataset.load(path)
    assert [c.id for c in dataset.pool] == ["u1", "u2"]
    assert dataset.case("u2").images == [(tmp_path / "u2.nii.gz").resolve()]
    assert all(c.id not in {"u1", "u2"} for c in dataset.all_cases)  # the pool never trains
    dataset.save(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text())["pool"] == [
        {"id": "u1", "image": ["u1.nii.gz"]}, {"id": "u2", "image": ["u2.nii.gz"]}]
    for bad in ({"image": "a.nii.gz"}, {"image": "z.nii.gz", "label": "z_seg.nii.gz"}):
        path.write_text(json.dumps({**manifest, "pool": [*manifest["pool"], bad]}))
        with pytest.raises(DatasetInvalid) as info:
            Dataset.load(path)
        assert "pool" in str(info.value) or "more than once" in str(info.value)
