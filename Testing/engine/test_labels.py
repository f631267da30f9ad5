"""Unlabelled cases (the pool) and corrected labels: add_label / add_pool and their CLI, never losing a label."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import make_image, make_label
from naming import names

from deepmed.cli.main import main
from deepmed.data import Dataset
from deepmed.data.labels import add_label, add_pool, pool_cases_from_paths
from deepmed.data.provenance import LabelProvenance
from deepmed.errors import DeepMedError


@pytest.fixture
def pooled(tmp_path):
    """A manifest (nnU-Net style extra keys, one split) with two labelled cases and two pool cases."""
    entries = []
    for i in range(2):
        image = make_image(seed=i)
        sitk.WriteImage(image, str(tmp_path / f"c{i}.nii.gz"))
        sitk.WriteImage(make_label(image), str(tmp_path / f"c{i}_seg.nii.gz"))
        entries.append({"image": f"c{i}.nii.gz", "label": f"c{i}_seg.nii.gz"})
    for i in range(2):
        sitk.WriteImage(make_image(seed=10 + i), str(tmp_path / f"u{i}.nii.gz"))
    manifest = {"name": "toy", "channel_names": {"0": "MR"}, "labels": {"background": 0, "a": 1, "b": 2},
                "file_ending": ".nii.gz", "numTraining": 2, "training": entries,
                "pool": [{"image": "u0.nii.gz"}, {"id": "u1", "image": ["u1.nii.gz"]}],
                "splits": [{"train": ["c0"], "val": ["c1"]}]}
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(manifest))
    return path


def corrected(tmp_path, seed=0, name="corrected.nrrd", value=1):
    """A label on u0's grid (a box of ``value``)."""
    label = make_label(make_image(seed=10), values=(value,))
    sitk.WriteImage(label, str(tmp_path / name))
    return tmp_path / name


def test_pool_case_gets_its_label_moves_to_training_and_keeps_the_manifest(pooled, tmp_path):
    label = corrected(tmp_path)
    written = add_label(pooled, "u0", label, LabelProvenance.from_model("liver@2", note="fixed the tip"))
    assert written == tmp_path / "labels" / "u0_label.v1.nii.gz"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(written))),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(label))))
    assert sitk.ReadImage(str(written)).GetDirection() == pytest.approx(make_image().GetDirection())
    dataset = Dataset.load(pooled)
    assert [c.id for c in dataset.pool] == ["u1"] and [c.id for c in dataset.training] == ["c0", "c1", "u0"]
    case = dataset.case("u0")
    assert case.label == written and case.provenance.history == []
    current = case.provenance.current
    assert (current.proposed_by, current.model_version, current.corrected_by_hand, current.note) == \
        ("liver", "2", True, "fixed the tip")
    assert current.when.endswith("Z") and current.when[:2] == "20"
    raw = json.loads(pooled.read_text())
    assert raw["file_ending"] == ".nii.gz" and raw["numTraining"] == 3  # keys DeepMed does not use are kept
    assert raw["training"][0] == {"image": "c0.nii.gz", "label": "c0_seg.nii.gz"}  # other entries untouched
    assert raw["splits"] == [{"train": ["c0", "u0"], "val": ["c1"]}]  # the new case trains in every fold
    again = Dataset.load(pooled)
    again.save(tmp_path / "copy.json")  # provenance survives a round trip through Dataset
    assert Dataset.load(tmp_path / "copy.json").case("u0").provenance.current == current


def test_a_replaced_label_is_kept_and_listed_in_the_history(pooled, tmp_path):
    first = add_label(pooled, "c0", corrected(tmp_path, name="one.nii.gz"), LabelProvenance.from_model("m@1"))
    second = add_label(pooled, "c0", corrected(tmp_path, name="two.nii.gz", value=2))
    assert (first.name, second.name) == ("c0_label.v1.nii.gz", "c0_label.v2.nii.gz")
    case = Dataset.load(pooled).case("c0")
    assert case.label == second
    history = case.provenance.history
    assert [h.label for h in history] == [tmp_path / "c0_seg.nii.gz", first]  # the original file, then v1
    assert history[0].provenance is None and history[1].provenance.proposed_by == "m"
    assert case.provenance.current.proposed_by == "" and case.provenance.current.corrected_by_hand
    for earlier, value in ((first, 1), (tmp_path / "c0_seg.nii.gz", 2)):  # every earlier file still intact
        assert value in np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(earlier))))
    assert add_label(pooled, "c0", second).name == "c0_label.v3.nii.gz"  # a version is never overwritten


def test_a_label_on_the_same_voxels_in_another_axis_order_is_stored_on_the_image_grid(pooled, tmp_path):
    label = make_label(make_image(seed=10))
    permuted = sitk.PermuteAxes(label, [2, 0, 1])
    assert permuted.GetDirection() != label.GetDirection()
    written = add_label(pooled, "u0", permuted)
    stored = sitk.ReadImage(str(written))
    assert stored.GetSize() == label.GetSize()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(stored), sitk.GetArrayFromImage(label))


@pytest.mark.parametrize(("change", "expected"), [
    ("spacing", "spacing"), ("origin", "origin"), ("size", "size"), ("value", "label value(s) 8, 9"),
    ("fraction", "whole numbers"), ("vector", "one value per voxel"),
])
def test_bad_labels_are_refused_naming_the_file_and_nothing_changes(pooled, tmp_path, change, expected):
    label = make_label(make_image(seed=10))
    if change == "spacing":
        label.SetSpacing((1, 1, 1))
    elif change == "origin":
        label.SetOrigin((5, 5, 5))
    elif change == "size":
        label = make_label(make_image(shape_zyx=(6, 7, 9)))
    elif change == "value":
        label = sitk.Add(label, 7) * sitk.Cast(label > 0, label.GetPixelID())
    elif change == "fraction":
        label = sitk.Cast(label, sitk.sitkFloat32) * 0.5
    elif change == "vector":
        label = sitk.Compose(label, label)
    path = tmp_path / "bad.nii.gz"
    sitk.WriteImage(label, str(path))
    before = pooled.read_text()
    with pytest.raises(DeepMedError) as info:
        add_label(pooled, "u0", path)
    assert names(str(info.value), str(path)) and expected in str(info.value) and "\n" not in str(info.value)
    assert pooled.read_text() == before and not (tmp_path / "labels").exists()


def test_unknown_case_and_non_json_manifests_are_refused(pooled, tmp_path):
    with pytest.raises(DeepMedError, match="no case 'u9'"):
        add_label(pooled, "u9", corrected(tmp_path))
    csv = tmp_path / "d.csv"
    csv.write_text("image,label\nc0.nii.gz,c0_seg.nii.gz\n")
    with pytest.raises(DeepMedError) as info:
        add_label(csv, "c0", corrected(tmp_path))
    assert names(str(info.value), str(csv))


def test_add_pool_from_files_and_folders_with_channel_patterns(tmp_path):
    data = tmp_path / "scans"
    data.mkdir()
    for subject in ("s1", "s2"):
        for channel in ("t1", "flair"):
            sitk.WriteImage(make_image(), str(data / f"{subject}_{channel}.nii.gz"))
    sitk.WriteImage(make_label(make_image()), str(data / "s1_seg.nii.gz"))
    cases, warnings = pool_cases_from_paths([data], ["_t1", "_flair"])
    assert [(c.id, [p.name for p in c.images]) for c in cases] == [
        ("s1", ["s1_t1.nii.gz", "s1_flair.nii.gz"]), ("s2", ["s2_t1.nii.gz", "s2_flair.nii.gz"])]
    assert any("s1_seg.nii.gz" in w for w in warnings)
    image = make_image()
    sitk.WriteImage(image, str(tmp_path / "c0_t1.nii.gz"))
    sitk.WriteImage(image, str(tmp_path / "c0_flair.nii.gz"))
    sitk.WriteImage(make_label(image), str(tmp_path / "c0_seg.nii.gz"))
    manifest = tmp_path / "dataset.json"
    manifest.write_text(json.dumps({"channel_names": {"0": "T1", "1": "FLAIR"}, "labels": {"background": 0, "a": 1,
                                    "b": 2}, "training": [{"image": ["c0_t1.nii.gz", "c0_flair.nii.gz"],
                                                           "label": "c0_seg.nii.gz"}]}))
    assert add_pool(manifest, cases) == ["s1", "s2"]
    assert add_pool(manifest, cases) == []  # the same images again: nothing added
    pool = Dataset.load(manifest).pool
    assert [p.images for p in pool] == [c.images for c in cases]
    assert json.loads(manifest.read_text())["pool"][0]["image"] == ["scans/s1_t1.nii.gz", "scans/s1_flair.nii.gz"]
    single, _ = pool_cases_from_paths([data / "s2_t1.nii.gz"])
    with pytest.raises(DeepMedError, match="id already used") as info:
        add_pool(manifest, [type(single[0])("s1", single[0].images)])
    assert names(str(info.value), "s1")


def test_cli_add_pool_then_add_label_and_bad_input_on_one_line(pooled, tmp_path, capsys):
    extra = tmp_path / "more"
    extra.mkdir()
    sitk.WriteImage(make_image(seed=10), str(extra / "u7.nii.gz"))
    assert main(["dataset", "add-pool", str(pooled), str(extra)]) == 0
    assert "u7" in capsys.readouterr().out
    assert [c.id for c in Dataset.load(pooled).pool] == ["u0", "u1", "u7"]
    label = corrected(tmp_path)
    assert main(["dataset", "add-label", str(pooled), "u7", str(label), "--proposed-by", "liver@3",
                 "--note", "checked"]) == 0
    out = capsys.readouterr().out
    assert "u7" in out and "u7_label.v1.nii.gz" in out
    provenance = Dataset.load(pooled).case("u7").provenance.current
    assert (provenance.proposed_by, provenance.model_version, provenance.note) == ("liver", "3", "checked")
    assert main(["dataset", "add-label", str(pooled), "u0", str(tmp_path / "missing.nii.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names(err[0], "missing.nii.gz") and "not found" in err[0]
    assert main(["dataset", "add-pool", str(pooled), str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err
